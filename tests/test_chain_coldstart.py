"""CHAIN's baselines as ColdStartAL runs them (issue 14): the grid picks λ by validation accuracy, the
meta-λ starts afresh every round, the validation split accumulates over the rounds, the largest_margin
query; and the paper's feature setting, a pretrained backbone loaded with from_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from methods.chain.config import ChainConfig
from methods.chain.learner import Fit, MetaLambda
from methods.chain.method import Chain
from methods.chain.strategies import largest_margin, margin, select
from tests.loop_resume import run_in_process
from tests.paper.standins import tiny_resnet18

SMOKE = ["method=chain", "scale=smoke", "data=digits", "logger=none"]


def test_largest_margin_takes_the_smallest_gap_between_the_most_and_least_probable_class() -> None:
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3], [0.6, 0.35, 0.05], [0.9, 0.05, 0.05]])
    # p_max − p_min: 0.5, 0.1, 0.55, 0.85; top-1 − top-2 (margin): 0.0, 0.1, 0.25, 0.85
    assert largest_margin(probs, 2).tolist() == [1, 0]
    assert margin(probs, 1).tolist() == [0]
    gen = torch.Generator().manual_seed(0)
    picked = select("largest_margin", 1, probs, torch.zeros(4, 2), torch.zeros(0, 2), gen, 0)
    assert picked.tolist() == [1]


def _grid_choice(monkeypatch: pytest.MonkeyPatch, metric: str) -> float:
    """The λ the grid keeps when the fits' validation scores are {λ: (accuracy, CE)} below."""
    scores = {0.0: (0.80, 0.50), 0.1: (0.90, 0.60), 1.0: (0.90, 0.40), 3.0: (0.70, 0.30)}

    def fake_fit(*args, lam_at, **kw) -> Fit:
        acc, ce = scores[lam_at(0)]
        return Fit([], ce, 1, lam_at(0), lam_at(0), acc)

    monkeypatch.setattr("methods.chain.method.fit", fake_fit)
    chain = Chain(schedule="grid", lam_grid=list(scores), grid_metric=metric)
    x = torch.zeros(2, 1)
    _, lam = chain.train_round([1, 2], x, x, x, x, torch.Generator().manual_seed(0), None)
    return lam


def test_grid_keeps_the_first_lambda_of_best_validation_accuracy(monkeypatch: pytest.MonkeyPatch) -> None:
    # ColdStartAL: strict >, so the first of equals
    assert _grid_choice(monkeypatch, "accuracy") == pytest.approx(0.1)
    assert _grid_choice(monkeypatch, "ce") == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"method\.grid_metric"):
        ChainConfig(grid_metric="f1")


def test_fit_reports_the_kept_parameters_validation_accuracy() -> None:
    from methods.chain.learner import fit, forward

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=gen)
    y = (x[:, 0] > 0).long()
    result = fit([3, 2], x, y, x, y, gen, steps=50, lr=0.1, weight_decay=0.0, eval_every=5, patience=3,
                 lam_at=lambda _s: 0.0)  # fmt: skip
    expected = (forward(result.params, x).argmax(-1) == y).float().mean().item()
    assert result.val_acc == pytest.approx(expected) and result.val_acc > 0.8


def _meta_at_round_start(compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reset: bool) -> list:
    seen: list[tuple[MetaLambda, float]] = []  # the objects themselves: an id() may be reused
    original = Chain.train_round

    def spy(self, dims, x, y, xv, yv, gen, meta):
        seen.append((meta, meta.lam))
        return original(self, dims, x, y, xv, yv, gen, meta)

    monkeypatch.setattr(Chain, "train_round", spy)
    args = [*SMOKE, "method.schedule=meta", "method.strategy=random", f"method.meta_reset={reset}"]
    run_in_process(compose, args, tmp_path / str(reset))
    return seen


def test_meta_lambda_starts_afresh_every_round_unless_carried_over(
    compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init = MetaLambda(0.1, 0.1, 0.05).lam  # meta_init 0.1 through softplus⁻¹ and back
    fresh = _meta_at_round_start(compose, tmp_path, monkeypatch, True)
    assert len(fresh) == 3 and fresh[0][0] is not fresh[1][0] and fresh[1][0] is not fresh[2][0]
    assert [lam for _, lam in fresh] == pytest.approx([init] * 3)
    carried = _meta_at_round_start(compose, tmp_path, monkeypatch, False)
    assert carried[0][0] is carried[1][0] is carried[2][0]
    assert carried[0][1] == pytest.approx(init) and carried[1][1] != pytest.approx(init)


def test_validation_split_accumulates_as_coldstartals(compose, tmp_path: Path) -> None:
    chain = Chain(val_size=500, rounds=9, accumulate_val=True)
    assert [chain.val_count(r) for r in range(10)] == list(range(50, 501, 50))
    assert Chain(val_size=500, rounds=9).val_count(0) == 500
    args = [*SMOKE, "method.schedule=none", "method.strategy=entropy", "method.accumulate_val=true"]
    _, ctx = run_in_process(compose, args, tmp_path)
    assert [v for _, v in ctx.curves["n_val"]] == [16, 32, 48]  # ⌊50 / 3⌋ per round
    _, ctx = run_in_process(compose, [*args[:-1], "method.accumulate_val=false"], tmp_path / "all")
    assert [v for _, v in ctx.curves["n_val"]] == [50, 50, 50]


def test_hub_features_are_the_backbones_pooled_output_on_standardised_images(tmp_path: Path) -> None:
    from transformers import ResNetModel

    from data.features import extract

    folder = tiny_resnet18(tmp_path / "resnet", widths=(8, 16, 32, 64))
    gen = torch.Generator().manual_seed(0)
    train, test = torch.rand(12, 3, 32, 32, generator=gen), torch.rand(5, 3, 32, 32, generator=gen)
    feats, test_feats = extract("hub", train, test, name=str(folder), batch_size=4)
    assert feats.shape == (12, 64) and test_feats.shape == (5, 64)
    mean, std = train.mean(dim=(0, 2, 3)).view(1, 3, 1, 1), train.std(dim=(0, 2, 3)).view(1, 3, 1, 1)
    net = ResNetModel.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = net(pixel_values=(test - mean) / std).pooler_output.flatten(1)
    assert torch.allclose(test_feats, expected, atol=1e-5)
    grey = extract("hub", train[:, :1], test[:, :1], name=str(folder))[0]  # grey repeated to RGB
    assert grey.shape == (12, 64)
    with pytest.raises(ValueError, match="name"):
        extract("hub", train, test)


def test_encoder_key_is_checked(compose, monkeypatch: pytest.MonkeyPatch) -> None:
    from runners.validate import ConfigError, validate_overrides

    with pytest.raises(ValueError, match=r"method\.encoder\.name"):
        ChainConfig(encoder={"source": "hub"})
    with pytest.raises(ValueError, match=r"method\.encoder\.source"):
        ChainConfig(encoder={"source": "torchvision"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent/hub-cache")
    args = [*SMOKE, "method.encoder.source=hub", "method.encoder.name=org/no-such-resnet"]
    with pytest.raises(ConfigError, match=r"method\.encoder\.name='org/no-such-resnet'.*hub"):
        validate_overrides(args, check_machine=True)


def test_finetune_trains_the_pretrained_backbone_afresh_every_fit(tmp_path: Path) -> None:
    from data.vision.encoders import pretrained_encoder
    from methods.chain.finetune import FinetuneNet
    from methods.chain.learner import MetaLambda, fit

    folder = tiny_resnet18(tmp_path / "resnet", widths=(4, 8, 8, 16))
    encoder = pretrained_encoder(str(folder), torch.zeros(3), torch.ones(3))
    net = FinetuneNet(encoder, encoder.out_dim, 3)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 3, 16, 16, generator=gen), torch.arange(12) % 3
    params = net.init(gen, "cpu")
    pretrained = [p.detach().clone() for p in encoder.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(params[:-2], pretrained, strict=True))
    net.train(False)
    with torch.no_grad():
        expected = encoder(x) @ params[-2] + params[-1]
        assert torch.allclose(net.forward(params, x), expected, atol=1e-6)
    stats = net.snapshot()
    result = fit(net, x, y, x, y, gen, steps=6, lr=0.05, weight_decay=0.0, eval_every=0, patience=1,
                 lam_at=lambda _s: 0.1, optimizer="sgd")  # fmt: skip
    moved = [not torch.allclose(a, b) for a, b in zip(result.params[:-2], pretrained, strict=True)]
    assert any(moved)  # the backbone was trained ...
    assert all(torch.equal(a, b) for a, b in zip(encoder.parameters(), pretrained, strict=True))  # ... a copy
    assert any(not torch.equal(stats[n], b) for n, b in encoder.named_buffers())  # batch-norm stats moved
    again = net.init(gen, "cpu")  # the next fit starts from the pretrained weights and statistics again
    assert all(torch.equal(a, b) for a, b in zip(again[:-2], pretrained, strict=True))
    assert all(torch.equal(stats[n], b) for n, b in encoder.named_buffers())
    meta = MetaLambda(0.1, 0.1, 0.05)  # the meta baseline differentiates through the backbone too
    fit(net, x, y, x, y, gen, steps=2, lr=0.05, weight_decay=0.0, eval_every=0, patience=1, meta=meta)
    assert meta.lam != pytest.approx(0.1)


def test_finetune_run_and_its_refusal_without_a_backbone(compose, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"method\.model=finetune.*method\.encoder\.source=hub"):
        ChainConfig(model="finetune")
    assert ChainConfig(model="finetune", encoder={"source": "hub", "name": "x"}).fit_optimizer == (
        "sgd",
        0.005,
    )
    assert ChainConfig().fit_optimizer == ("adam", 0.01)
    folder = tiny_resnet18(tmp_path / "resnet", widths=(4, 8, 8, 16))
    args = [*SMOKE, "method.schedule=chain", "method.strategy=badge", "method.model=finetune"]
    args += ["method.encoder.source=hub", f"method.encoder.name={folder}"]
    metrics, ctx = run_in_process(compose, args, tmp_path / "run")
    assert [v for _, v in ctx.curves["n_labelled"]] == [10, 15, 20]
    assert 0 <= metrics["accuracy"] <= 1 and 0 < metrics["aulc"] <= 1
