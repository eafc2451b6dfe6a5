"""SCooL across processes (issue 16): rank r of G simulates devices [r·n/G, (r+1)·n/G).

What crosses ranks each round, through torch.distributed's collectives in the process group Fabric's ddp
strategy set up (gloo on CPU, NCCL on GPU):
- the cross-loss matrix L: each rank computes its devices' rows (its models on every device's batch, the
  data is on every rank) and all-gathers them, so every rank runs the same E-step on the whole L;
- the M-step θ_i ← θ_i^start − Σ_j w_ij Δ_j needs every device's Δ_j: the device models are all-gathered
  and each rank computes its own rows i. A reduce-scatter of per-rank partial sums Σ_{j∈rank} w_ij Δ_j
  moves the same n·|θ| numbers per rank, and the attention encoders and the checkpoint need the gathered
  models anyway, so the gather is the simpler of two equivalent choices;
- the attention prior's rows of π and w (all-gathered) and the shared encoder's gradient (all-reduced).
With G = 1 every collective is the identity, and the run is the one-process run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from lightning.fabric import Fabric


@dataclass(frozen=True)
class DeviceShard:
    """This rank's contiguous block of the n simulated devices, and the collectives over ranks."""

    n: int
    rank: int = 0
    world: int = 1

    @classmethod
    def from_fabric(cls, fabric: Fabric, n: int) -> DeviceShard:
        world, rank = int(fabric.world_size), int(fabric.global_rank)
        if n % world:
            raise ValueError(
                f"method.n_devices={n} must be a multiple of the number of processes ({world}: "
                "hardware.devices × hardware.num_nodes), each process simulating the same number of devices"
            )
        return cls(n=n, rank=rank, world=world)

    @property
    def size(self) -> int:
        return self.n // self.world

    @property
    def lo(self) -> int:
        return self.rank * self.size

    @property
    def hi(self) -> int:
        return self.lo + self.size

    @property
    def rows(self) -> slice:
        return slice(self.lo, self.hi)

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's rows (size, ...) of every rank, in rank order: (n, ...). No autograd through it
        (Fabric's all_gather would differentiate, which no caller here needs)."""
        if self.world == 1:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def gather_dict(self, d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: self.gather(v) for k, v in d.items()}

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Σ over ranks (identity with one rank)."""
        if self.world == 1:
            return t
        out = t.detach().clone().contiguous()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out
