"""SCooL's attention prior (eqs. 25–31) against hand-computed values: the official per-row tanh encoders
(models/resnet.py, Attention_layerwise_model_update_multilayer_mask), π taken before the encoder step,
per-device encoders that learn only from their own row, the shared (paper) encoder from every row."""

from __future__ import annotations

import copy

import pytest
import torch

from methods.scool.attention import (
    UpdateEncoders,
    attention_round,
    average_encoders,
    loss_weights,
    make_optimizer,
)
from methods.scool.config import SCooLConfig
from methods.scool.graph import in_group_share
from methods.scool.shard import DeviceShard

SHAPES = {"0.weight": (4, 3), "0.bias": (4,), "2.weight": (2, 4)}


def _updates(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(n, *s, generator=g) for k, s in SHAPES.items()}


@torch.no_grad()
def _by_hand(enc: UpdateEncoders, e: int, updates: dict[str, torch.Tensor], i: int, j: int) -> float:
    """f(θ_i, θ_j) under encoder e, a loop over tensors and rows as the official forward: rows of
    u / ‖u‖ (norm over the whole model) through tanh(W2 tanh(W1 r + b1) + b2), q_j·k_i / F, mean over l."""
    norm = [
        sum(float(v[d].pow(2).sum()) for v in updates.values()) ** 0.5 for d in range(len(updates["0.bias"]))
    ]
    total = 0.0
    for layer, v in enumerate(updates.values()):
        w1, w2 = enc.weights[2 * layer][e], enc.weights[2 * layer + 1][e]
        b1, b2 = enc.biases[2 * layer][e], enc.biases[2 * layer + 1][e]
        rows_i = v[i].reshape(v.shape[1], -1) / norm[i]
        rows_j = v[j].reshape(v.shape[1], -1) / norm[j]
        s = 0.0
        for f in range(rows_i.shape[0]):
            code_i = torch.tanh(w2 @ torch.tanh(w1 @ rows_i[f] + b1) + b2)
            code_j = torch.tanh(w2 @ torch.tanh(w1 @ rows_j[f] + b1) + b2)
            s += float(code_i @ code_j)
        total += s / rows_i.shape[0]
    return total / len(updates)


@pytest.mark.parametrize("count", [1, 5])
def test_encoder_shapes_and_the_official_formula(count: int) -> None:
    torch.manual_seed(0)
    n = 5
    enc = UpdateEncoders(SHAPES, [3, 2], count)
    # one Linear(d_l, 3) and one Linear(3, 2) per tensor, stacked over the encoders
    want = [(count, 3, 3), (count, 2, 3), (count, 3, 1), (count, 2, 3), (count, 3, 4), (count, 2, 3)]
    assert [tuple(w.shape) for w in enc.weights] == want
    with torch.no_grad():  # make the encoders differ, so a wrong encoder index would show
        for p in enc.parameters():
            p.add_(0.3 * torch.randn_like(p))
    updates = _updates(n)
    rows = torch.arange(n)
    got = enc.logits(updates, rows).detach()
    assert got.shape == (n, n)
    for i in range(n):
        for j in range(n):
            want = _by_hand(enc, 0 if count == 1 else i, updates, i, j)
            assert float(got[i, j]) == pytest.approx(want, rel=1e-5, abs=1e-6)
    # a subset of rows (one rank's devices) gives those rows of the whole matrix; its encoders are its own
    if count == 1:
        torch.testing.assert_close(enc.logits(updates, rows[2:4]), got[2:4])


def _round(official: bool, cross: torch.Tensor, updates, enc, opt, mask=None):
    n = cross.shape[0]
    return attention_round(enc, opt, updates, cross, torch.arange(n), 2.0, 1, official, mask)


@pytest.mark.parametrize("official", [False, True])
def test_pi_is_taken_before_the_encoder_step(official: bool) -> None:
    torch.manual_seed(0)
    n = 5
    updates = _updates(n)
    cross = torch.rand(n, n, generator=torch.Generator().manual_seed(1)) * 3
    enc = UpdateEncoders(SHAPES, [10, 5], n if official else 1)
    opt = make_optimizer(enc, official, 0.1, 0.01)
    start = copy.deepcopy(enc)
    out = _round(official, cross, updates, enc, opt)
    pi = torch.softmax(start.logits(updates, torch.arange(n)), 1)  # the round-start encoders' π
    w = loss_weights(cross, 2.0) * pi
    torch.testing.assert_close(out.pi, pi)
    torch.testing.assert_close(out.w, w / w.sum(1, keepdim=True))
    # the encoders did take their step, so π after it differs (the old code took π from there)
    after = torch.softmax(enc.logits(updates, torch.arange(n)), 1)
    assert not torch.allclose(after, pi, atol=1e-4)


def test_per_device_encoders_learn_only_from_their_own_row() -> None:
    torch.manual_seed(0)
    n, j = 4, 2
    updates = _updates(n)
    cross = torch.rand(n, n, generator=torch.Generator().manual_seed(1)) * 3
    other = cross.clone()
    other[j] = other[j].flip(0)  # device j's target row changes
    ends = []
    for c in (cross, other):
        torch.manual_seed(0)
        enc = UpdateEncoders(SHAPES, [10, 20], n)
        _round(True, c, updates, enc, torch.optim.SGD(enc.parameters(), lr=1.0))
        ends.append([p.detach().clone() for p in enc.parameters()])
    for a, b in zip(*ends, strict=True):
        keep = torch.arange(n) != j
        torch.testing.assert_close(a[keep], b[keep], rtol=0, atol=0)  # no gradient from row j elsewhere
        assert not torch.allclose(a[j], b[j])
    # the paper's one shared encoder learns from every row: the same change moves it
    shared = []
    for c in (cross, other):
        torch.manual_seed(0)
        enc = UpdateEncoders(SHAPES, [10, 5], 1)
        _round(False, c, updates, enc, torch.optim.SGD(enc.parameters(), lr=1.0))
        shared.append(torch.cat([p.detach().flatten() for p in enc.parameters()]))
    assert not torch.allclose(*shared)


def test_official_encoders_are_averaged_after_the_round() -> None:
    torch.manual_seed(0)
    enc = UpdateEncoders(SHAPES, [3, 2], 4)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(torch.randn_like(p))
    means = [p.detach().mean(0) for p in enc.parameters()]
    average_encoders(enc, DeviceShard(n=4))
    for p, mean in zip(enc.parameters(), means, strict=True):
        torch.testing.assert_close(p, mean.expand_as(p))


def test_sparsified_rows_put_no_weight_outside_the_mask() -> None:
    torch.manual_seed(0)
    n = 5
    mask = torch.eye(n)
    mask[:, 0] = 1.0
    enc = UpdateEncoders(SHAPES, [10, 5], 1)
    opt = make_optimizer(enc, False, 0.1, 0.01)
    out = _round(False, torch.rand(n, n), _updates(n), enc, opt, mask)
    assert float(out.w[mask == 0].abs().max()) == 0.0 and float(out.pi[mask == 0].abs().max()) == 0.0
    torch.testing.assert_close(out.w.sum(1), torch.ones(n))
    assert torch.isfinite(torch.tensor(out.loss))


@pytest.mark.parametrize("official", [False, True])
def test_the_encoders_learn_the_groups(official: bool) -> None:
    """Two groups whose updates point alike and whose cross losses are low within the group: after some
    rounds π puts most of its neighbour weight on the device's group, and the encoder loss fell."""
    gen = torch.Generator().manual_seed(0)
    n = 6
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    direction = torch.randn(2, 4, 3, generator=gen)
    updates = {"0.weight": direction[group] + 0.1 * torch.randn(n, 4, 3, generator=gen)}
    cross = torch.where(group[:, None] == group[None, :], torch.tensor(0.1), torch.tensor(3.0))
    torch.manual_seed(0)
    enc = UpdateEncoders({"0.weight": (4, 3)}, [10, 20] if official else [10, 5], n if official else 1)
    opt = make_optimizer(enc, official, 0.2 if official else 0.1, 0.01)
    first = attention_round(enc, opt, updates, cross, torch.arange(n), 1.0, 1, official)
    for _ in range(30):
        last = attention_round(enc, opt, updates, cross, torch.arange(n), 1.0, 1, official)
    assert last.loss < first.loss
    assert in_group_share(last.pi, group) > 0.8 > in_group_share(first.pi, group)


def test_mode_defaults_are_the_papers_and_the_official_scripts() -> None:
    paper, official = SCooLConfig(), SCooLConfig(att_encoder="official")
    assert paper.att_encoder == "paper" and paper.att_steps == 1
    assert (paper.att_dims_for(), paper.att_lr_for()) == ([10, 5], 0.1)  # App. C.1
    assert (official.att_dims_for(), official.att_lr_for()) == ([10, 20], 0.2)  # resnet.py, --mixing_lr
    with pytest.raises(ValueError, match=r"method\.att_encoder"):
        SCooLConfig(att_encoder="gcn")


def test_devices_split_evenly_over_ranks_or_refuse() -> None:
    class _Fabric:
        world_size, global_rank = 2, 1

    shard = DeviceShard.from_fabric(_Fabric(), 40)  # type: ignore[arg-type]
    assert (shard.lo, shard.hi, shard.size) == (20, 40, 20)
    with pytest.raises(ValueError, match=r"method.n_devices=41 must be a multiple .* \(2"):
        DeviceShard.from_fabric(_Fabric(), 41)  # type: ignore[arg-type]


@pytest.mark.parametrize("steps", [1, 3])
def test_one_encoder_pass_per_step_with_pi_from_the_first(
    steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """π at the round's start is step 0's encoding too: `steps` passes, not steps + 1, same π."""
    torch.manual_seed(0)
    n = 4
    updates = _updates(n)
    cross = torch.rand(n, n, generator=torch.Generator().manual_seed(2)) * 3
    enc = UpdateEncoders(SHAPES, [10, 5], 1)
    start = copy.deepcopy(enc)
    passes = []
    real = UpdateEncoders.logits
    monkeypatch.setattr(UpdateEncoders, "logits", lambda self, u, r: passes.append(1) or real(self, u, r))
    out = attention_round(
        enc, make_optimizer(enc, False, 0.1, 0.01), updates, cross, torch.arange(n), 2.0, steps, False
    )
    assert len(passes) == steps
    torch.testing.assert_close(out.pi, torch.softmax(real(start, updates, torch.arange(n)), 1))


def test_paper_encoder_keeps_the_groups_on_a_model_sized_update() -> None:
    """Updates normalised over a whole model are small per entry, so the encoder's loss gradient is small;
    Adam's coupled L2 decay would then drive every weight to zero (π uniform). The decay is decoupled, as
    the official AdamW applies it, and the groups survive many rounds."""
    gen = torch.Generator().manual_seed(0)
    n, shape = 6, (64, 50)
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    direction = torch.randn(2, *shape, generator=gen)
    updates = {"0.weight": direction[group] + 0.1 * torch.randn(n, *shape, generator=gen)}
    cross = torch.where(group[:, None] == group[None, :], torch.tensor(0.1), torch.tensor(3.0))
    torch.manual_seed(0)
    enc = UpdateEncoders({"0.weight": shape}, [10, 5], 1)
    opt = make_optimizer(enc, False, 0.1, 0.01)
    shares = []
    for _ in range(60):
        shares.append(
            in_group_share(
                attention_round(enc, opt, updates, cross, torch.arange(n), 1.0, 1, False).pi, group
            )
        )
    assert min(shares[30:]) > 0.8


def test_paper_weight_decay_is_decoupled() -> None:
    """With no loss gradient one step shrinks each weight by lr × decay (AdamW), not by ~lr (Adam + L2)."""
    enc = UpdateEncoders({"0.weight": (4, 3)}, [10, 5], 1)
    before = [p.detach().clone() for p in enc.parameters()]
    opt = make_optimizer(enc, False, 0.1, 0.01)
    for p in enc.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, old in zip(enc.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), old * (1 - 0.1 * 0.01))
