"""The batched colour jitter equals applying, image by image, the four ColorJitter ops in the order and with
the factors drawn for that image, then RandomGrayscale: the grouped (op-per-slot) evaluation changes no
pixel."""

from __future__ import annotations

import pytest
import torch

from data.vision.augment import JITTER_OPS, _grey, colour, draw_jitter
from data.vision.options import AugmentConfig


@pytest.mark.parametrize("hue", [0.1, 0.0])
def test_batched_jitter_equals_the_per_image_ops(hue: float) -> None:
    cfg = AugmentConfig(kind="cifar", jitter_hue=hue)
    x = torch.rand(40, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    got = colour(x, cfg, torch.Generator().manual_seed(7))

    draw = draw_jitter(len(x), cfg, torch.Generator().manual_seed(7), x.device)
    assert 0 < int(draw.on.sum()) < len(x) and 0 < int(draw.to_grey.sum()) < len(x)  # both branches run
    for i in range(len(x)):
        y = x[i : i + 1]
        if draw.on[i]:
            for k in draw.order[i].tolist():
                if k < 3 or hue > 0:
                    y = JITTER_OPS[k](y, draw.factors[k][i : i + 1])
        if draw.to_grey[i]:
            y = _grey(y).expand_as(y)
        torch.testing.assert_close(got[i : i + 1], y, atol=1e-6, rtol=0)
