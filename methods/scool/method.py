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

import logging
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric

from data.config import ImageDataConfig
from data.vision.datasets import load_image_splits
from methods.scool.attention import UpdateEncoder, attention_mixing
from methods.scool.augment import augment, channel_stats, normalize
from methods.scool.batched import BatchedDevices, make_model
from methods.scool.config import SCooLConfig
from methods.scool.graph import apply_mask, dpsgd_graph, fedavg_weights, in_group_share, sparsify_mask
from methods.scool.partition import device_test_sets, make_partition
from methods.scool.plot import plot_graph
from methods.scool.sbm import block_matrix, random_memberships, sbm_estep, sbm_mixing, self_edges
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

        def prepare(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
            """A local batch through the official training transform (gen) or the test one (None)."""
            if cfg.augment and gen is not None:
                x = augment(x, gen)
            return normalize(x, mean, std) if cfg.normalize else x

        local_x = train.images[idx].to(device)  # (n, m, C, H, W)
        local_y = torch.gather(maps, 1, train.labels[idx]).to(device)  # each device's own labels
        t_idx, t_mask = device_test_sets(test.labels.numpy(), part)
        t_idx = torch.as_tensor(t_idx)
        test_x = prepare(test.images[t_idx].to(device), None)
        test_y = torch.gather(maps, 1, test.labels[t_idx]).to(device)
        test_mask = torch.as_tensor(t_mask).to(device)
        own = own_outputs(part.label_map, part.classes).to(device)
        group = torch.as_tensor(part.group)
        m = idx.shape[1]
        log.info(
            "scool: %d devices × %d samples (%s), %d true groups", n, m, cfg.partition, len(set(part.group))
        )

        torch.manual_seed(ctx.seed)  # the same initialisation on every device (paper)
        model = make_model(cfg.model, tuple(train.images.shape[1:]), num_classes, cfg.hidden_dims)
        devs = BatchedDevices(model.to(device), n)
        init = devs.flat()
        rows = torch.arange(n, device=device)[:, None]

        gen0 = torch.Generator().manual_seed(ctx.seed)
        fixed = dpsgd_graph(n, cfg.dpsgd_neighbours, gen0).to(device)
        k_blocks = cfg.sbm_blocks or cfg.groups
        b = block_matrix(k_blocks, cfg.sbm_b_in, cfg.sbm_b_out).to(device)
        phi = random_memberships(n, k_blocks, gen0).to(device)
        encoder = UpdateEncoder({k: v[0].numel() for k, v in init.items()}, cfg.att_dim).to(device)
        enc_opt = torch.optim.Adam(encoder.parameters(), lr=cfg.att_lr)
        mask, w = None, torch.eye(n, device=device)
        start, metrics = 0, {}

        state = ctx.checkpoint.load()
        if state is not None:
            devs.load(state["params"])
            phi, mask, w, metrics = state["phi"], state["mask"], state["w"], state["metrics"]
            encoder.load_state_dict(state["encoder"])
            enc_opt.load_state_dict(state["enc_opt"])
            start = state["round"] + 1
            log.info("resumed from %s after round %d", ctx.checkpoint.path, state["round"])

        with ctx.progress(cfg.rounds, f"scool {cfg.algo}/{cfg.partition} seed {ctx.seed}", start) as bar:
            for rnd in range(start, cfg.rounds):
                gen = torch.Generator().manual_seed(ctx.seed * 100_003 + rnd)
                before = devs.flat()
                train_loss = 0.0
                for _ in range(cfg.local_steps):
                    pick = torch.randint(m, (n, cfg.batch_size), generator=gen).to(device)
                    train_loss = devs.sgd_step(
                        prepare(local_x[rows, pick], gen), local_y[rows, pick], cfg.lr, cfg.weight_decay
                    )
                after = devs.flat()
                extra: dict[str, float] = {}

                if cfg.algo == "fedavg":
                    w = fedavg_weights(n, cfg.fedavg_fraction, gen).to(device)
                    devs.mix(w)
                elif cfg.algo == "dpsgd":
                    w = fixed
                    devs.mix(w)
                elif cfg.algo.startswith("scool"):
                    pick = torch.randint(m, (n, cfg.loss_batch), generator=gen).to(device)
                    cross = devs.cross_loss(prepare(local_x[rows, pick], gen), local_y[rows, pick])
                    if cfg.algo == "scool_sbm":
                        if not cfg.sbm_warm_start:  # the official code: a fresh random φ every round
                            phi = random_memberships(n, k_blocks, gen).to(device)
                        edges, phi = sbm_estep(
                            -cross, phi, b, cfg.sbm_alpha, cfg.sbm_scale_for(), cfg.sbm_iters
                        )
                        own_w = self_edges(-cross, phi, b, cfg.sbm_scale_for()) if cfg.sbm_self_edge else None
                        w = sbm_mixing(edges, own_w)
                        extra["edge_mean"] = float(edges.sum() / (n * (n - 1)))
                    else:
                        updates = {k: after[k] - init[k] for k in after}
                        w, enc_loss = attention_mixing(
                            encoder, enc_opt, updates, cross, cfg.att_scale_for(), cfg.att_steps
                        )
                        extra["encoder_loss"] = enc_loss
                    if cfg.sparsify_round >= 0 and rnd == cfg.sparsify_round:
                        mask = sparsify_mask(w, cfg.sparsify_keep_for())
                    w = apply_mask(w, mask)
                    # M-step (eq. 22, official code): θ_i ← θ_i^start − Σ_j w_ij (θ_j^start − θ_j^end)
                    devs.load(
                        {
                            k: before[k] - torch.einsum("ij,j...->i...", w, before[k] - after[k])
                            for k in before
                        }
                    )

                last = rnd == cfg.rounds - 1
                if (rnd + 1) % cfg.eval_every == 0 or last:
                    acc, acc_all = self.evaluate(devs, test_x, test_y, test_mask, own)
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
                    ctx.checkpoint.save(
                        {
                            "params": devs.flat(),
                            "phi": phi,
                            "mask": mask,
                            "w": w,
                            "metrics": metrics,
                            "encoder": encoder.state_dict(),
                            "enc_opt": enc_opt.state_dict(),
                            "round": rnd,
                        }
                    )
                bar.update()

        if cfg.algo != "local":
            plot_graph(ctx.out_dir / "graph.png", w.cpu().numpy(), part.group, f"{cfg.algo}, {cfg.partition}")
            np.save(ctx.out_dir / "graph.npy", w.cpu().numpy())
        return metrics
