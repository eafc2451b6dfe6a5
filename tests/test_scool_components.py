"""SCooL pieces against hand-computed values: batched = looped devices, the SBM E-step (eqs. 18–20),
partitions, graphs (the attention prior: tests/test_scool_attention.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.scool.batched import BatchedDevices, LoopedDevices, make_model
from methods.scool.graph import dpsgd_graph, in_group_share, sparsify_mask
from methods.scool.partition import device_test_sets, make_partition
from methods.scool.sbm import block_matrix, sbm_estep, sbm_mixing


@pytest.mark.parametrize("kind, shape", [("mlp", (1, 8, 8)), ("cnn", (3, 32, 32))])
def test_batched_devices_match_a_loop_over_devices(kind: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    n, b = 3, 4
    model = make_model(kind, shape, 10, [16])
    batched, looped = BatchedDevices(model, n), LoopedDevices(model, n)
    x, y = torch.randn(n, b, *shape), torch.randint(0, 10, (n, b))
    loss_b = batched.sgd_step(x, y, lr=0.1, weight_decay=0.01)
    loss_l = looped.sgd_step(x, y, lr=0.1, weight_decay=0.01)
    assert loss_b == pytest.approx(loss_l, rel=1e-5)
    names = list(batched.params)
    for i, m in enumerate(looped.models):
        for name, p in zip(names, m.parameters(), strict=True):
            torch.testing.assert_close(batched.params[name][i], p.detach(), atol=1e-5, rtol=1e-5)
    # after one step the devices differ; the cross-loss matrix is model i on device j's batch
    torch.testing.assert_close(batched.cross_loss(x, y), looped.cross_loss(x, y), atol=1e-5, rtol=1e-5)
    w = torch.softmax(torch.randn(n, n), 1)
    batched.mix(w)
    looped.mix(w)
    first = next(iter(looped.models[1].parameters()))
    torch.testing.assert_close(batched.params[names[0]][1], first.detach(), atol=1e-5, rtol=1e-5)


def test_sbm_edge_posterior_is_eq_18_by_hand() -> None:
    b = block_matrix(2, 0.8, 0.2)
    phi = torch.tensor([[1.0, 0.0], [0.3, 0.7]])
    y = torch.tensor([[0.0, -0.5], [-2.0, 0.0]])
    w, _ = sbm_estep(y, phi, b, alpha=1.0, scale=2.0, iters=1)
    logit = torch.log(b / (1 - b))
    expected = torch.sigmoid((phi[0] @ logit @ phi[1] - 0.5) / 2.0)  # 0.3·log4 + 0.7·(−log4)
    assert float(w[0, 1]) == pytest.approx(float(expected), rel=1e-6)
    assert float(w[0, 0]) == 0.0 and float(w[1, 1]) == 0.0


def test_sbm_recovers_blocks_from_losses() -> None:
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    same = group[:, None] == group[None, :]
    y = torch.where(same, torch.tensor(-0.1), torch.tensor(-6.0))  # Y = −L: low loss within a group
    phi0 = torch.full((6, 2), 0.5) + 0.01 * torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    w, phi = sbm_estep(y, phi0 / phi0.sum(1, keepdim=True), block_matrix(2, 0.8, 0.2), 1.0, 1.0, 20)
    z = phi.argmax(1)
    assert (z[:3] == z[0]).all() and (z[3:] == z[3]).all() and z[0] != z[3]
    off = ~torch.eye(6, dtype=torch.bool)
    assert w[same & off].min() > 0.5 > w[~same].max()
    mix = sbm_mixing(w)
    torch.testing.assert_close(mix.sum(1), torch.ones(6))
    assert in_group_share(mix, group) > 0.95


@pytest.mark.parametrize("kind", ["noniid", "noniid_sbm", "conflict"])
def test_partitions_are_disjoint_equal_and_grouped(kind: str) -> None:
    labels = np.repeat(np.arange(10), 30)
    part = make_partition(labels, 10, kind, 8, 2, 4, np.random.default_rng(0), samples_per_class=5)
    assert part.indices.shape == (8, 10)
    assert len(np.unique(part.indices)) == part.indices.size  # disjoint shards
    for d in range(8):  # each device holds exactly its classes, 5 samples of each
        counts = np.bincount(labels[part.indices[d]], minlength=10)
        assert set(np.flatnonzero(counts)) == set(part.classes[d]) and counts.max() == 5
        assert sorted(part.label_map[d]) == list(range(10))  # a permutation of the labels
    if kind != "noniid":
        assert (part.group == np.repeat(np.arange(4), 2)).all()
    if kind == "conflict":  # groups 0/1 share inputs but disagree on every label of the set
        assert (part.classes[0] == part.classes[2]).all()
        s = part.classes[0]
        assert (part.label_map[0][s] != part.label_map[2][s]).all()
    idx, mask = device_test_sets(labels, part)
    assert all(np.isin(labels[idx[d][mask[d]]], part.classes[d]).all() for d in range(8))


def test_graphs() -> None:
    w = dpsgd_graph(10, 3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(w.sum(1), torch.ones(10))
    assert ((w > 0) == (w.T > 0)).all() and (w.diagonal() > 0).all()
    assert ((w > 0).sum(1) >= 4).all()
    scores = torch.arange(25.0).view(5, 5)
    mask = sparsify_mask(scores, keep=0.6)  # int(0.6·5) = 3 devices: self and the top 2 neighbours
    assert (mask.sum(1) == 3).all() and (mask.diagonal() == 1).all()
    assert mask[0, 4] == 1 and mask[0, 3] == 1 and mask[0, 1] == 0
