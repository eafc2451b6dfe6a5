"""Probe heads on frozen feature maps (arXiv 2307.08702 §4.1).

- ``linear``: AdaptiveAvgPool2d(p) (done when the features are made) → flatten → Linear.
- ``attention``, the official one (diffssl ``ssl_diff/attention_fusion.py`` + ``attention_head.py`` with
  scripts/attention.sh's ``Use_CLS_Token:True:1024,Insert_CLS_Token,Attention:1024:8:4:2,
  Extract_CLS_Token``): pool to min(size, 16) → LayerNorm over [C, H, W] → 1×1 conv to 1024 → tokens
  and a zero-initialised CLS token, no positional embedding → 2 pre-norm ViT blocks (8 heads, MLP ratio
  4, GELU, qkv without bias) → Linear on the CLS token; trained with lr 5e-2.
- ``attention_pos``, this project's earlier variant: LayerNorm over channels only, learned positional
  embeddings, torch's TransformerEncoderLayer and a final LayerNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearHead(nn.Module):
    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class AttentionHead(nn.Module):
    """The ``attention_pos`` variant (not the official head: see OfficialAttentionHead)."""

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


class ViTBlock(nn.Module):
    """diffssl attention_head.Block: x + Attn(LN(x)), then x + MLP(LN(x)); qkv without bias, the
    output projection with bias, no dropout."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not a multiple of {heads} heads")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        # softmax(q kᵀ / √d_head) v, as the official Attention.forward
        att = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class OfficialAttentionHead(nn.Module):
    """The official attention head (module docstring) for an (N, C, H, W) map of a single block and t."""

    def __init__(
        self,
        channels: int,
        size: tuple[int, int],
        num_classes: int,
        dim: int = 1024,
        heads: int = 8,
        layers: int = 2,
        pool_size: int = 16,
    ) -> None:
        super().__init__()
        self.pool_size = pool_size
        h, w = min(size[0], pool_size), min(size[1], pool_size)  # min(feature size, pre_pool_size)
        self.norm = nn.LayerNorm([channels, h, w])
        self.proj = nn.Conv2d(channels, dim, 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.Sequential(*[ViTBlock(dim, heads) for _ in range(layers)])
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (min(x.shape[-2], self.pool_size), min(x.shape[-1], self.pool_size))
        x = self.proj(self.norm(F.adaptive_avg_pool2d(x, size)))
        tokens = x.flatten(2).transpose(1, 2)  # 'b c h w -> b (h w) c'
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        return self.fc(self.blocks(tokens)[:, 0])
