"""SCooL's paper protocol pieces: the official partitions (util.py), its augmentation and normalisation,
the official scripts' defaults, chunked evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.scool.partition import make_partition


@pytest.mark.parametrize(
    "num_classes, c, per_label, shard, holders",
    [(10, 2, 5000, 250, 20), (100, 10, 500, 50, 10)],  # CIFAR-10 (2 classes a device), CIFAR-100 (10)
)
def test_noniid_partition_is_the_official_shards(
    num_classes: int, c: int, per_label: int, shard: int, holders: int
) -> None:
    labels = np.repeat(np.arange(num_classes), per_label)
    part = make_partition(labels, num_classes, "noniid", 100, c, 5, np.random.default_rng(3))
    assert part.indices.shape == (100, 500)  # every device: 500 samples, c shards
    assert len(np.unique(part.indices)) == part.indices.size  # disjoint
    for d in range(100):
        counts = np.bincount(labels[part.indices[d]], minlength=num_classes)
        assert sorted(np.flatnonzero(counts)) == sorted(part.classes[d]) and len(set(part.classes[d])) == c
        assert set(counts[counts > 0]) == {shard}
    # every label is held by exactly `holders` devices: all of CIFAR-10's / CIFAR-100's training set is used
    assert (np.bincount(part.classes.ravel(), minlength=num_classes) == holders).all()
    other = make_partition(labels, num_classes, "noniid", 100, c, 5, np.random.default_rng(4))
    assert not (other.classes == part.classes).all()  # the pairs are drawn by the seed


def test_noniid_sbm_partition_gives_groups_of_identical_pairs_of_500() -> None:
    labels = np.repeat(np.arange(10), 5000)
    part = make_partition(labels, 10, "noniid_sbm", 100, 2, 5, np.random.default_rng(0))
    assert part.indices.shape == (100, 500) and len(np.unique(part.indices)) == 50_000
    for g in range(5):
        members = part.classes[part.group == g]
        assert len(members) == 20 and (members == members[0]).all()
    assert (np.bincount(part.classes.ravel(), minlength=10) == 20).all()


def test_sparsification_keeps_10_or_20_of_100_devices_self_included() -> None:
    from methods.scool.config import SCooLConfig
    from methods.scool.graph import sparsify_mask

    w = torch.rand(100, 100, generator=torch.Generator().manual_seed(0))
    w.fill_diagonal_(0.0)  # the device itself is kept even when it is not among the top weights
    for partition, kept in (("noniid", 10), ("noniid_sbm", 20)):
        keep = SCooLConfig(partition=partition).sparsify_keep_for()
        mask = sparsify_mask(w, keep)
        assert (mask.sum(1) == kept).all() and (mask.diagonal() == 1).all()
        top = w[0].topk(kept - 1).indices
        assert (mask[0, top] == 1).all()


def test_official_script_defaults() -> None:
    from methods.scool.config import SCooLConfig

    noniid, sbm = SCooLConfig(partition="noniid"), SCooLConfig(partition="noniid_sbm")
    assert (noniid.att_scale_for(), sbm.att_scale_for()) == pytest.approx((2.0, 9.0))
    assert (noniid.sbm_scale_for(), sbm.sbm_scale_for()) == pytest.approx((2.0, 1.0))
    assert noniid.sbm_blocks == 2 and noniid.fedavg_fraction == pytest.approx(0.1)
    assert (noniid.classes_for(10), noniid.classes_for(100)) == (2, 10)


def test_fedavg_averages_a_tenth_of_the_devices() -> None:
    from methods.scool.graph import fedavg_weights

    w = fedavg_weights(100, 0.1, torch.Generator().manual_seed(0))
    picked = torch.nonzero(w[0]).flatten()
    assert len(picked) == 10 and (w == w[0]).all()  # every device gets the same average
    torch.testing.assert_close(w.sum(1), torch.ones(100))
    other = fedavg_weights(100, 0.1, torch.Generator().manual_seed(1))
    assert not torch.equal(torch.nonzero(other[0]).flatten(), picked)


def test_official_self_edge_is_the_sigmoid_and_at_most_two_thirds() -> None:
    from methods.scool.sbm import block_matrix, sbm_mixing, self_edges

    b = block_matrix(2, 0.8, 0.2)
    phi = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    y = -torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.3, 1.0], [2.0, 1.0, 0.0]])
    own = self_edges(y, phi, b, scale=2.0)
    log4 = float(np.log(4.0))
    expected = torch.sigmoid(torch.tensor([log4 / 2, (0.5 * log4 - 0.5 * log4 - 0.3) / 2, log4 / 2]))
    torch.testing.assert_close(own, expected)
    assert float(own.max()) == pytest.approx(1 / (1 + 0.5), abs=1e-6)  # σ(log 2) = 2/3 at Y_ii = 0
    edges = torch.full((3, 3), 0.5).fill_diagonal_(0.0)
    mix = sbm_mixing(edges, own)
    torch.testing.assert_close(mix.diagonal(), own / (own + 1.0))
    torch.testing.assert_close(sbm_mixing(edges).diagonal(), torch.full((3,), 0.5))  # the paper's weight 1


def test_augment_is_crop_flip_saturation_and_normalise_uses_the_official_constants() -> None:
    from methods.scool.augment import augment, channel_stats, normalize

    x = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = augment(x, torch.Generator().manual_seed(1), saturation=0.0)  # crop + flip only
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    b = augment(x, torch.Generator().manual_seed(1), saturation=0.0)
    assert torch.equal(a, b)  # the generator decides everything
    # each output is a shifted (and maybe mirrored) window of the image padded with 128/255
    fill = 128 / 255
    padded = torch.nn.functional.pad(x.reshape(-1, 3, 32, 32), (4, 4, 4, 4), value=fill)
    for i, img in enumerate(a.reshape(-1, 3, 32, 32)):
        windows = [
            w
            for dy in range(9)
            for dx in range(9)
            for w in (padded[i, :, dy : dy + 32, dx : dx + 32],)
            for w in (w, w.flip(-1))
        ]
        assert any(torch.allclose(img, w) for w in windows)
    grey = torch.full((1, 3, 4, 4), 0.5)
    torch.testing.assert_close(augment(grey, torch.Generator().manual_seed(0), pad=0), grey)  # grey stays
    mean, std = channel_stats("cifar10", x[0])
    torch.testing.assert_close(mean, torch.tensor([0.4914, 0.4822, 0.4465]))
    z = normalize(torch.full((3, 2, 2), 0.5), mean, std)
    torch.testing.assert_close(z[:, 0, 0], (0.5 - mean) / std)


@pytest.mark.slow
def test_evaluation_in_chunks_equals_one_call() -> None:
    from methods.scool.batched import BatchedDevices, make_model
    from methods.scool.method import SCooL

    torch.manual_seed(0)
    n, t = 3, 7
    devs = BatchedDevices(make_model("cnn", (3, 32, 32), 10, []), n)
    with torch.no_grad():
        for p in devs.params.values():  # devices that differ, so a mix-up of devices would show
            p.add_(0.05 * torch.randn_like(p))
    x, y = torch.rand(n, t, 3, 32, 32), torch.randint(0, 10, (n, t))
    mask = torch.ones(n, t, dtype=torch.bool)
    mask[0, 5:] = False
    own = torch.zeros(n, 10, dtype=torch.bool)
    own[:, :2] = True
    whole = SCooL(eval_chunk=100).evaluate(devs, x, y, mask, own)
    calls: list[int] = []
    forward = devs.logits
    devs.logits = lambda xs: calls.append(xs.shape[1]) or forward(xs)  # type: ignore[method-assign]
    chunked = SCooL(eval_chunk=3).evaluate(devs, x, y, mask, own)
    assert calls == [3, 3, 1]
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    logits = torch.cat([forward(x[:, i : i + 3]) for i in range(0, t, 3)], 1)
    torch.testing.assert_close(logits, forward(x), atol=1e-5, rtol=1e-5)
