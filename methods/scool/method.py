"""SCooL's communication rounds with every device simulated at once (methods/scool/batched.py).

Per round: every device runs `local_steps` SGD steps on its own data; then the algorithm combines them.
- local: nothing. fedavg: θ_i ← mean_j θ_j. dpsgd (Dirac prior): θ_i ← Σ_j w_ij θ_j on a fixed graph.
- scool_*: E-step on Y_ij = −L(θ_i; D_j) gives w (SBM or attention prior), then the M-step (eq. 22) as the
  official code runs it: θ_i ← θ_i^start − Σ_j w_ij Δ_j, Δ_j = θ_j^start − θ_j^end (∇L(D_j; θ_i) ≈
  ∇L(D_j; θ_j), the local updates as pseudo-gradients).
Each round's randomness comes from a generator seeded by (seed, round), and the checkpoint after a round
holds everything else (parameters, φ, encoder, mask, curves), so a resumed run matches an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric

from data.config import ImageDataConfig
from data.vision.datasets import load_image_splits
from methods.scool.attention import (
    UpdateEncoders,
    attention_round,
    average_encoders,
    loss_weights,
    make_optimizer,
)
from methods.scool.augment import augment, channel_stats, normalize
from methods.scool.batched import BatchedDevices, make_model
from methods.scool.config import SCooLConfig
from methods.scool.graph import apply_mask, dpsgd_graph, fedavg_weights, in_group_share, sparsify_mask
from methods.scool.partition import device_test_sets, make_partition
from methods.scool.plot import plot_graph
from methods.scool.sbm import block_matrix, random_memberships, sbm_estep, sbm_mixing, self_edges
from methods.scool.shard import DeviceShard
from runners.context import RunContext
from runners.contract import LoopMethod

log = logging.getLogger("reprolab")


def own_outputs(label_map: np.ndarray, classes: np.ndarray) -> torch.Tensor:
    """(n, C) bool: the outputs device i is trained on, its classes under its label map."""
    n, num_classes = label_map.shape
    own = torch.zeros(n, num_classes, dtype=torch.bool)
    own[torch.arange(n)[:, None], torch.as_tensor(np.take_along_axis(label_map, classes, 1))] = True
    return own


def device_accuracy(
    logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, own: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-device accuracy (fractions) of logits (n, t, C) on labels y (n, t), counting the real test
    samples (``mask``, (n, t)): masked and unmasked.

    Masked is the official code's and the paper's metric: the prediction is the argmax over the device's
    own outputs only (``own``, (n, C); the official evaluation's ``outputs[:, mask]``, 2-way on CIFAR-10).
    Unmasked takes the argmax over all C outputs, so a device is also wrong when it predicts a class it
    never holds.
    """
    counted = mask.sum(1)
    unmasked = ((logits.argmax(-1) == y) & mask).sum(1) / counted
    restricted = logits.masked_fill(~own[:, None, :], float("-inf"))
    masked = ((restricted.argmax(-1) == y) & mask).sum(1) / counted
    return masked, unmasked


class SCooL(LoopMethod):
    def __init__(self, **cfg: Any) -> None:
        self.cfg = SCooLConfig(**cfg)

    @torch.no_grad()
    def evaluate(
        self, dev: BatchedDevices, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, own: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each device's accuracy on the test samples of its own classes, under its label map, as
        fractions: (masked, unmasked). See `device_accuracy`. The forward runs `eval_chunk` test
        images of every device at a time (memory), which changes no logit."""
        chunk = self.cfg.eval_chunk
        logits = torch.cat([dev.logits(x[:, i : i + chunk]) for i in range(0, x.shape[1], chunk)], 1)
        return device_accuracy(logits, y, mask, own)

    def run(self, ctx: RunContext, fabric: Fabric) -> dict[str, float]:
        cfg, device = self.cfg, fabric.device
        n = cfg.n_devices
        shard = DeviceShard.from_fabric(fabric, n)  # this rank's devices (all of them in one process)
        mine, k = shard.rows, shard.size
        train, test = load_image_splits(ctx.cfg.data or ImageDataConfig(), seed=ctx.seed)
        num_classes = train.num_classes
        rng = np.random.default_rng(ctx.seed)
        part = make_partition(
            train.labels.numpy(),
            num_classes,
            cfg.partition,
            n,
            cfg.classes_for(num_classes),
            cfg.groups,
            rng,
            cfg.samples_per_class,
        )
        maps = torch.as_tensor(part.label_map)
        idx = torch.as_tensor(part.indices)
        mean, std = channel_stats(getattr(ctx.cfg.data, "name", "digits"), train.images)

        def prepare(
            x: torch.Tensor, gen: torch.Generator | None, of: tuple[int, int] | None = None
        ) -> torch.Tensor:
            """A local batch through the official training transform (gen) or the test one (None)."""
            if cfg.augment and gen is not None:
                x = augment(x, gen, of=of)
            return normalize(x, mean, std) if cfg.normalize else x

        # Every rank holds every device's data: the cross-loss batches come from all devices.
        local_x = train.images[idx].to(device)  # (n, m, C, H, W)
        local_y = torch.gather(maps, 1, train.labels[idx]).to(device)  # each device's own labels
        t_idx, t_mask = device_test_sets(test.labels.numpy(), part)
        t_idx = torch.as_tensor(t_idx)[mine]
        test_x = prepare(test.images[t_idx].to(device), None)
        test_y = torch.gather(maps[mine], 1, test.labels[t_idx]).to(device)
        test_mask = torch.as_tensor(t_mask)[mine].to(device)
        own = own_outputs(part.label_map, part.classes)[mine].to(device)
        group = torch.as_tensor(part.group)
        m = idx.shape[1]
        log.info(
            "scool: %d devices × %d samples (%s), %d true groups; this process simulates devices %d..%d",
            n,
            m,
            cfg.partition,
            len(set(part.group)),
            shard.lo,
            shard.hi - 1,
        )

        torch.manual_seed(ctx.seed)  # the same initialisation on every device (paper), on every rank
        model = make_model(cfg.model, tuple(train.images.shape[1:]), num_classes, cfg.hidden_dims)
        devs = BatchedDevices(model.to(device), k)
        init = {key: v[:1] for key, v in devs.flat().items()}  # θ^0, common to all devices
        rows = torch.arange(k, device=device)[:, None]
        all_rows = torch.arange(n, device=device)[:, None]
        my_ids = torch.arange(shard.lo, shard.hi, device=device)

        gen0 = torch.Generator().manual_seed(ctx.seed)
        fixed = dpsgd_graph(n, cfg.dpsgd_neighbours, gen0).to(device)
        k_blocks = cfg.sbm_blocks or cfg.groups
        b = block_matrix(k_blocks, cfg.sbm_b_in, cfg.sbm_b_out).to(device)
        phi = random_memberships(n, k_blocks, gen0).to(device)
        official = cfg.att_encoder == "official"
        encoder = UpdateEncoders(
            {key: v.shape[1:] for key, v in init.items()}, cfg.att_dims_for(), k if official else 1
        ).to(device)
        enc_opt = make_optimizer(encoder, official, cfg.att_lr_for(), cfg.att_weight_decay)
        mask, w = None, torch.eye(n, device=device)
        start, metrics = 0, {}

        state = ctx.checkpoint.load()
        if state is not None:  # the full state of all n devices, on every rank: each takes its own
            devs.load({key: v[mine] for key, v in state["params"].items()})
            phi, mask, w, metrics = state["phi"], state["mask"], state["w"], state["metrics"]
            load_encoder_state(
                encoder, enc_opt, state["encoder"], state["enc_opt"], shard if official else None
            )
            start = state["round"] + 1
            log.info("resumed from %s after round %d", ctx.checkpoint.path, state["round"])

        with ctx.progress(cfg.rounds, f"scool {cfg.algo}/{cfg.partition} seed {ctx.seed}", start) as bar:
            for rnd in range(start, cfg.rounds):
                # Every rank draws the whole round's randomness (all n devices) and uses its own share.
                gen = torch.Generator().manual_seed(ctx.seed * 100_003 + rnd)
                before = devs.flat()
                train_loss = torch.zeros(())
                for _ in range(cfg.local_steps):
                    pick = torch.randint(m, (n, cfg.batch_size), generator=gen)[mine].to(device)
                    x = prepare(
                        local_x[mine][rows, pick], gen, of=(n * cfg.batch_size, shard.lo * cfg.batch_size)
                    )
                    step_loss = devs.sgd_step(x, local_y[mine][rows, pick], cfg.lr, cfg.weight_decay)
                    train_loss = torch.tensor(step_loss * k)
                train_loss = float(shard.all_sum(train_loss.reshape(1))[0]) / n
                after = devs.flat()
                extra: dict[str, float] = {}

                if cfg.algo in ("fedavg", "dpsgd"):
                    w = (
                        fedavg_weights(n, cfg.fedavg_fraction, gen).to(device)
                        if cfg.algo == "fedavg"
                        else fixed
                    )
                    devs.mix(w[mine], shard.gather_dict(after))
                elif cfg.algo.startswith("scool"):
                    pick = torch.randint(m, (n, cfg.loss_batch), generator=gen).to(device)
                    # L: this rank's models on every device's batch, rows all-gathered (n, n)
                    cross = shard.gather(
                        devs.cross_loss(prepare(local_x[all_rows, pick], gen), local_y[all_rows, pick])
                    )
                    after_all = shard.gather_dict(after)
                    if cfg.algo == "scool_sbm":
                        if not cfg.sbm_warm_start:  # the official code: a fresh random φ every round
                            phi = random_memberships(n, k_blocks, gen).to(device)
                        edges, phi = sbm_estep(
                            -cross, phi, b, cfg.sbm_alpha, cfg.sbm_scale_for(), cfg.sbm_iters
                        )
                        own_w = self_edges(-cross, phi, b, cfg.sbm_scale_for()) if cfg.sbm_self_edge else None
                        w = sbm_mixing(edges, own_w)
                        extra["edge_mean"] = float(edges.sum() / (n * (n - 1)))
                        select = w
                    else:
                        sign = -1.0 if official else 1.0  # official: θ^0 − θ; paper (eq. 26): θ − θ^0
                        updates = {key: sign * (after_all[key] - init[key]) for key in after_all}
                        att = attention_round(
                            encoder,
                            enc_opt,
                            updates,
                            cross[mine],
                            my_ids,
                            cfg.att_scale_for(),
                            cfg.att_steps,
                            official,
                            None if mask is None else mask[mine],
                            shard,
                        )
                        if official and cfg.att_average:
                            average_encoders(encoder, shard)
                        w = shard.gather(att.w)
                        extra["encoder_loss"] = att.loss / n
                        select = loss_weights(cross, cfg.att_scale_for()) if official else w
                    if cfg.sparsify_round >= 0 and rnd == cfg.sparsify_round:
                        mask = sparsify_mask(select, cfg.sparsify_keep_for())
                    w = apply_mask(w, mask)
                    # M-step (eq. 22, official code): θ_i ← θ_i^start − Σ_j w_ij (θ_j^start − θ_j^end),
                    # this rank's rows i over all devices j
                    before_all = shard.gather_dict(before)
                    devs.load(
                        {
                            key: before[key]
                            - torch.einsum("ij,j...->i...", w[mine], before_all[key] - after_all[key])
                            for key in before
                        }
                    )

                last = rnd == cfg.rounds - 1
                if (rnd + 1) % cfg.eval_every == 0 or last:
                    acc, acc_all = self.evaluate(devs, test_x, test_y, test_mask, own)
                    acc, acc_all = shard.gather(acc), shard.gather(acc_all)
                    metrics = {
                        "accuracy": float(acc.mean()),
                        "accuracy_min": float(acc.min()),
                        "accuracy_unmasked": float(acc_all.mean()),
                    }
                    if cfg.algo != "local":
                        metrics["in_group_weight"] = in_group_share(w.cpu(), group)
                    ctx.log({**metrics, "train_loss": train_loss, **extra}, rnd + 1, curve=True)
                    bar.update(advance=0, info=f"acc {metrics['accuracy']:.1%}")

                every = ctx.cfg.checkpoint_every
                if every > 0 and (rnd + 1) % every == 0 and not last:
                    # the whole run's state (gathered: a collective on every rank), written by rank 0
                    params = shard.gather_dict(devs.flat())
                    enc_state, opt_state = encoder_state(encoder, enc_opt, shard if official else None)
                    if shard.rank == 0:
                        ctx.checkpoint.save(
                            {
                                "params": params,
                                "phi": phi,
                                "mask": mask,
                                "w": w,
                                "metrics": metrics,
                                "encoder": enc_state,
                                "enc_opt": opt_state,
                                "round": rnd,
                            }
                        )
                bar.update()

        if cfg.algo != "local" and shard.rank == 0:
            plot_graph(ctx.out_dir / "graph.png", w.cpu().numpy(), part.group, f"{cfg.algo}, {cfg.partition}")
            np.save(ctx.out_dir / "graph.npy", w.cpu().numpy())
        return metrics


def encoder_state(
    enc: UpdateEncoders, opt: torch.optim.Optimizer, shard: DeviceShard | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The encoders' and their optimiser's state; per-device encoders (shard given) gathered over ranks,
    so a checkpoint holds all n devices' whatever the number of processes."""
    model, optim = enc.state_dict(), copy.deepcopy(opt.state_dict())
    if shard is None:
        return model, optim
    model = {key: shard.gather(v) for key, v in model.items()}
    for st in optim["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            st[key] = shard.gather(st[key])
    return model, optim


def load_encoder_state(
    enc: UpdateEncoders,
    opt: torch.optim.Optimizer,
    model: dict[str, Any],
    optim: dict[str, Any],
    shard: DeviceShard | None,
) -> None:
    """`encoder_state`'s inverse: each rank takes its devices' encoders."""
    if shard is not None:
        model = {key: v[shard.rows] for key, v in model.items()}
        optim = copy.deepcopy(optim)
        for st in optim["state"].values():
            for key in ("exp_avg", "exp_avg_sq"):
                st[key] = st[key][shard.rows]
    enc.load_state_dict(model)
    opt.load_state_dict(optim)
