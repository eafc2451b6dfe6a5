"""The SBCL loss (arXiv 2306.15925 §3, official SimCLR/loss.py `SupConLoss_rank`), and SupCon through it.

Equation labels below (S1–S3) are this file's; the paper's own numbering was not checked offline.

z holds B images × 2 views, L2-normalised, stacked view-major: rows 0..B−1 view 1, B..2B−1 view 2, so the
other view of row i is i⁺ = (i + B) mod 2B. Everything is masks over the 2B × 2B similarity matrix: no
python loop over anchors, the same code on CPU and GPU.

- (S1) subclass term: L_sub(i) = −1/|P_s(i)| Σ_{p∈P_s(i)} log softmax_{a≠i}(z_i·z_a/τ)_p,
  P_s(i) = {p ≠ i : s_p = s_i}.
- (S2) class term:
  L_cls(i) = −1/|P_c(i)| Σ_{p∈P_c(i)} log [exp(z_i·z_p/τ_{y_i}) / Σ_{a∈A_c(i)} exp(z_i·z_a/τ_{y_i})],
  P_c(i) = {p : y_p = y_i, s_p ≠ s_i} ∪ {i⁺}, A_c(i) = {a : s_a ≠ s_i} ∪ {i⁺}.
- (S3) total: L = mean_i [ (τ/τ_b) L_sub(i) + γ L_cls(i) ].

With s = y (every K_c = 1) and γ = 0 this is exactly SupCon (Khosla et al. 2020, L^sup_out) scaled by
τ/τ_b — the SupCon baseline and SBCL's warm-up epochs are this call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SBCLTerms:
    loss: torch.Tensor
    sub: torch.Tensor  # mean L_sub
    cls: torch.Tensor  # mean L_cls (0 when γ = 0 and it was skipped)


def _mean_log_prob(logits: torch.Tensor, contrast: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Per row: mean over positives of log softmax of ``logits`` restricted to ``contrast``."""
    logits = logits.masked_fill(~contrast, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return log_prob.masked_fill(~positives, 0.0).sum(dim=1) / positives.sum(dim=1)


def sbcl_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    subclasses: torch.Tensor,
    tau: float = 0.1,
    tau_base: float = 0.07,
    gamma: float = 0.25,
    class_tau: torch.Tensor | None = None,
) -> SBCLTerms:
    """SBCL loss of z (2B, d) for labels and global subclass ids of the B images (both views share them)."""
    n = z.shape[0]
    b = n // 2
    y = labels.repeat(2)
    s = subclasses.repeat(2)
    idx = torch.arange(n, device=z.device)
    eye = idx[:, None] == idx[None, :]
    partner = idx[None, :] == ((idx + b) % n)[:, None]
    same_sub = s[:, None] == s[None, :]
    sim = z @ z.T

    # (S1) positives are the anchor's subclass (the other view included), contrast set all a ≠ i.
    l_sub = -_mean_log_prob(sim / tau, ~eye, same_sub & ~eye)
    if gamma == 0:
        return SBCLTerms((tau / tau_base) * l_sub.mean(), l_sub.mean(), torch.zeros((), device=z.device))
    # (S2) other subclasses of the anchor's class plus i⁺ as positives, temperature τ_{y_i}.
    same_cls = y[:, None] == y[None, :]
    t = (class_tau.to(z.device)[y] if class_tau is not None else torch.full((n,), tau, device=z.device))[
        :, None
    ]
    l_cls = -_mean_log_prob(sim / t, ~same_sub | partner, (same_cls & ~same_sub) | partner)
    total = ((tau / tau_base) * l_sub + gamma * l_cls).mean()  # (S3)
    return SBCLTerms(total, l_sub.mean(), l_cls.mean())


def supcon_loss(
    z: torch.Tensor, labels: torch.Tensor, tau: float = 0.1, tau_base: float = 0.1
) -> torch.Tensor:
    """SupCon = SBCL with one subclass per class and no class term."""
    return sbcl_loss(z, labels, labels, tau=tau, tau_base=tau_base, gamma=0.0).loss


def global_view_major(parts: list[torch.Tensor]) -> torch.Tensor:
    """Each rank's view-major (2b, ...) block → the global batch's view-major (2Wb, ...) block: every
    rank's view 1, then every rank's view 2, so row i's other view stays (i + Wb) mod 2Wb."""
    halves = [(p[: p.shape[0] // 2], p[p.shape[0] // 2 :]) for p in parts]
    return torch.cat([first for first, _ in halves] + [second for _, second in halves])


def gather_batch(
    z: torch.Tensor, labels: torch.Tensor, subclasses: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global batch of a data-parallel step: z (with gradients, through torch.distributed.nn's
    all_gather, whose backward sums every rank's gradient into each rank's slice) and the labels and
    subclass ids of every rank, so each rank's loss is the loss of the whole batch across ranks (the
    negatives do not change with the number of devices). Outside a process group: the inputs."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z, labels, subclasses
    from torch.distributed.nn.functional import all_gather  # its deprecated successor has no autograd

    world = dist.get_world_size()
    zs = list(all_gather(z.contiguous()))
    ys = [torch.empty_like(labels) for _ in range(world)]
    ss = [torch.empty_like(subclasses) for _ in range(world)]
    dist.all_gather(ys, labels.contiguous())
    dist.all_gather(ss, subclasses.contiguous())
    return global_view_major(zs), torch.cat(ys), torch.cat(ss)
