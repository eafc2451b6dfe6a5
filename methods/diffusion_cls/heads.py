"""Probe heads on frozen feature maps (arXiv 2307.08702 §4.1).

- linear: AdaptiveAvgPool2d(p) (done when the features are cached) → flatten → Linear.
- attention: pooled map → LayerNorm over channels → 1×1 conv to ``dim`` → p² tokens (+ learned positions)
  and a CLS token → ``layers`` transformer blocks (``heads`` heads) → Linear on CLS. The paper pools to
  16×16 with dim 1024, 8 heads, 2 blocks; the sizes here come from the config.
"""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class AttentionHead(nn.Module):
    def __init__(
        self, channels: int, tokens: int, num_classes: int, dim: int, heads: int, layers: int
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.proj = nn.Conv2d(channels, dim, 1)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        block = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # LayerNorm over channels
        tokens = self.proj(x).flatten(2).transpose(1, 2)  # (N, p², dim)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1) + self.pos
        return self.out(self.blocks(tokens)[:, 0])
