"""CHAIN's active-learning loop: initial random labels, then rounds of query → retrain from scratch → test.

Each round's randomness comes from generators seeded by (seed, round), so a run resumed from the
checkpoint of its last finished round (labelled set, meta-λ state, curves) continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric

from data.config import ImageDataConfig
from data.features import extract
from data.vision.datasets import load_image_splits
from methods.chain.config import ChainConfig
from methods.chain.learner import FeatureNet, Fit, MetaLambda, Net, evaluate, fit, head, predict
from methods.chain.schedule import fixed_lambda
from methods.chain.strategies import select
from runners.context import RunContext
from runners.contract import LoopMethod

log = logging.getLogger("reprolab")


def aulc(n_labelled: list[float], accuracy: list[float]) -> float:
    """Area under the learning curve (accuracy vs labels), trapezoidal, over the label range: in [0, 1]."""
    if len(n_labelled) < 2:
        return float(accuracy[0])
    x, y = np.asarray(n_labelled, dtype=float), np.asarray(accuracy, dtype=float)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


class Chain(LoopMethod):
    def __init__(self, **cfg: Any) -> None:
        self.cfg = ChainConfig(**cfg)

    def _round_gen(self, seed: int, rnd: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed * 100_003 + rnd)

    def train_round(
        self,
        net: Net | list[int],
        x: torch.Tensor,
        y: torch.Tensor,
        xv: torch.Tensor,
        yv: torch.Tensor,
        gen: torch.Generator,
        meta: MetaLambda | None,
    ) -> tuple[Fit, float]:
        """One fit with the configured λ schedule; returns the fit and the λ to report for the round."""
        cfg = self.cfg
        optimizer, lr = cfg.fit_optimizer
        common = dict(
            steps=cfg.train_steps,
            lr=lr,
            weight_decay=cfg.weight_decay,
            eval_every=cfg.eval_every,
            patience=cfg.patience,
            optimizer=optimizer,
            # CHAIN: no early stop, and no kept parameters, before its curriculum has faded (schedule.py);
            # with same_stopping every schedule waits as long, so the columns differ in λ only
            min_steps=cfg.chain_steps if cfg.same_stopping or cfg.schedule == "chain" else 0,
        )
        if cfg.schedule == "meta":
            result = fit(net, x, y, xv, yv, gen, meta=meta, **common)
            return result, result.lam_last
        if cfg.schedule == "grid":
            # Per-round grid search on the validation split: the first λ of the grid with the highest
            # validation accuracy (ColdStartAL), or with the lowest validation CE (grid_metric=ce).
            state = gen.get_state()
            fits = []
            for lam in cfg.lam_grid:
                gen.set_state(state)  # the same initialisation for every λ
                fits.append((fit(net, x, y, xv, yv, gen, lam_at=lambda _s, lam=lam: lam, **common), lam))
            if cfg.grid_metric == "accuracy":
                return max(fits, key=lambda f: f[0].val_acc)  # max keeps the first of equals
            return min(fits, key=lambda f: f[0].val_ce)
        lam_at = fixed_lambda(
            cfg.schedule,
            cfg.lam,
            total_steps=cfg.chain_steps,
            n_labelled=len(y),
            n_initial=cfg.n_initial,
            lam0=cfg.chain_lam0,
            power=cfg.chain_power,
        )
        return fit(net, x, y, xv, yv, gen, lam_at=lam_at, **common), lam_at(0)

    def new_meta(self) -> MetaLambda | None:
        cfg = self.cfg
        return MetaLambda(cfg.meta_init, cfg.meta_inner_lr, cfg.meta_lr) if cfg.schedule == "meta" else None

    def val_count(self, rnd: int) -> int:
        """Validation labels round ``rnd`` sees: ColdStartAL's --accumulate_val adds ⌊val_size/(rounds+1)⌋
        per round (active_sampler_ft.py's valid_budget_size), else the whole split."""
        cfg = self.cfg
        if not cfg.accumulate_val:
            return cfg.val_size
        return max(1, (rnd + 1) * (cfg.val_size // (cfg.rounds + 1)))

    def run(self, ctx: RunContext, fabric: Fabric) -> dict[str, float]:
        cfg, dev = self.cfg, fabric.device
        from data.hub import check_hub_sources

        # Each sweep job checks its own hub names (a swept data= is not on the command line, which the CLI
        # checks): an unreachable one fails here in seconds, not after the loaders' retries.
        check_hub_sources(ctx.cfg)
        train, test = load_image_splits(ctx.cfg.data or ImageDataConfig(), seed=ctx.seed)
        needed = cfg.val_size + cfg.n_initial + cfg.rounds * cfg.query_size
        if needed > len(train.labels):  # before any feature is computed
            raise ValueError(
                f"method.val_size + n_initial + rounds × query_size = {needed} labels, but the training "
                f"set has {len(train.labels)}: lower them or use a larger dataset (data=mnist5k, cifar10)"
            )
        enc, k = cfg.encoder, train.num_classes
        net: Net
        if cfg.model == "finetune":  # the deep setting: the learner sees the images, the backbone is trained
            from data.features import channel_stats
            from data.vision.encoders import pretrained_encoder
            from methods.chain.finetune import FinetuneNet

            encoder = pretrained_encoder(enc.name, *channel_stats(train.images)).to(dev)
            feats, test_feats = train.images.to(dev), test.images.to(dev)
            net = FinetuneNet(encoder, encoder.out_dim, k)
        else:
            feats, test_feats = (
                f.to(dev)
                for f in extract(
                    enc.source,
                    train.images,
                    test.images,
                    name=enc.name,
                    batch_size=enc.batch_size,
                    device=dev,
                )
            )
            net = FeatureNet([feats.shape[1], *(cfg.hidden_dims if cfg.model == "mlp" else []), k])
        labels, test_labels = train.labels.to(dev), test.labels.to(dev)

        # Validation split and initial labels: random, from the run seed.
        order = np.random.default_rng(ctx.seed).permutation(len(labels))
        val_idx = order[: cfg.val_size]
        labelled = order[cfg.val_size : cfg.val_size + cfg.n_initial].tolist()
        meta = self.new_meta()
        start, history = 0, {"n_labelled": [], "accuracy": []}

        state = ctx.checkpoint.load()
        if state is not None:
            labelled, start, history = state["labelled"], state["round"] + 1, state["history"]
            if meta is not None:
                meta.load_state_dict(state["meta"])
            log.info("resumed from %s after round %d", ctx.checkpoint.path, state["round"])

        metrics: dict[str, float] = {}
        in_use = np.zeros(len(labels), dtype=bool)
        in_use[val_idx] = True
        with ctx.progress(
            cfg.rounds + 1, f"chain {cfg.strategy}/{cfg.schedule} seed {ctx.seed}", start
        ) as bar:
            for rnd in range(start, cfg.rounds + 1):
                gen = self._round_gen(ctx.seed, rnd)
                if cfg.meta_reset:
                    meta = self.new_meta()  # ColdStartAL: a fresh λ (and its Adam) every round
                val_now = torch.as_tensor(val_idx[: self.val_count(rnd)], device=dev)
                xv, yv = feats[val_now], labels[val_now]
                idx = torch.as_tensor(labelled, device=dev)
                result, lam = self.train_round(net, feats[idx], labels[idx], xv, yv, gen, meta)
                net.restore(result.extra)  # the kept parameters' batch-norm statistics (fine-tuning)
                metrics = evaluate(result.params, test_feats, test_labels, cfg.ece_bins, net=net)
                history["n_labelled"].append(len(labelled))
                history["accuracy"].append(metrics["accuracy"])
                ctx.log(
                    {
                        **metrics,
                        "n_labelled": len(labelled),
                        "lambda": lam,
                        "lambda_kept": result.lam_kept,  # λ of the update that gave the kept parameters
                        "val_ce": result.val_ce,
                        "val_acc": result.val_acc,
                        "n_val": len(yv),
                    },
                    rnd,
                    True,
                )

                if rnd < cfg.rounds:  # query the next batch from the pool
                    used = in_use.copy()
                    used[labelled] = True
                    pool = np.flatnonzero(~used)
                    pool_x = feats[torch.as_tensor(pool, device=dev)]
                    pool_emb = predict(net, result.params, pool_x, embed=True)  # one pass over the pool
                    with torch.no_grad():
                        probs = torch.softmax(head(result.params, pool_emb), -1)
                    lab_emb = predict(net, result.params, feats[idx], embed=True)
                    picked = select(
                        cfg.strategy, cfg.query_size, probs, pool_emb, lab_emb, gen, ctx.seed + rnd
                    )
                    labelled = labelled + pool[picked].tolist()

                every = ctx.cfg.checkpoint_every
                if every > 0 and (rnd + 1) % every == 0 and rnd < cfg.rounds:
                    ctx.checkpoint.save(
                        {
                            "labelled": labelled,
                            "round": rnd,
                            "history": history,
                            "meta": meta.state_dict() if meta is not None else None,
                        }
                    )
                bar.update(info=f"acc {metrics['accuracy']:.3f}")
        return {
            **metrics,
            "aulc": aulc(history["n_labelled"], history["accuracy"]),
            "n_labelled": float(history["n_labelled"][-1]),
        }
