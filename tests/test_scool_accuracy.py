"""SCooL's accuracy as the official code measures it (issue 14): the argmax over each device's own outputs
(`outputs[:, mask]`), beside the argmax over all outputs, as fractions (issue 18 item 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.scool.method import device_accuracy, own_outputs


def test_own_outputs_follow_the_label_map() -> None:
    classes = np.array([[0, 1], [2, 3]])
    identity = np.arange(4)
    shifted = np.array([0, 1, 3, 2])  # a conflict group: its inputs 2, 3 are trained as labels 3, 2
    own = own_outputs(np.stack([identity, shifted]), classes)
    assert own.tolist() == [[True, True, False, False], [False, False, True, True]]
    own = own_outputs(np.stack([identity, np.array([2, 3, 0, 1])]), np.array([[0, 1], [0, 1]]))
    assert own.tolist() == [[True, True, False, False], [False, False, True, True]]


def test_masked_accuracy_by_hand() -> None:
    # device 0 owns outputs {0, 1}; device 1 owns {2, 3}; device 1's third test slot is padding
    logits = torch.tensor(
        [
            [[0.0, 1, 5, 0], [0, 2, 3, 0], [4, 1, 0, 0]],  # y = 0, 1, 0
            [[9.0, 0, 1, 2], [0, 0, 3, 1], [0, 0, 0, 9]],  # y = 3, 2, (2: padding)
        ]
    )
    y = torch.tensor([[0, 1, 0], [3, 2, 2]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    own = torch.tensor([[True, True, False, False], [False, False, True, True]])
    masked, unmasked = device_accuracy(logits, y, mask, own)
    # device 0: all-class argmax 2, 2, 0 -> 1/3 right; own-class argmax 1, 1, 0 -> 2/3
    # device 1: all-class argmax 0, 2 -> 1/2; own-class argmax 3, 2 -> 2/2; the padded slot never counts
    torch.testing.assert_close(masked, torch.tensor([2 / 3, 1.0]))
    torch.testing.assert_close(unmasked, torch.tensor([1 / 3, 0.5]))
    assert float(masked.mean()) == pytest.approx(5 / 6) and float(masked.max()) <= 1.0
