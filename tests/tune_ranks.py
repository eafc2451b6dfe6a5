"""Run by tests/test_ddp_tuner.py as ``python tests/tune_ranks.py MODEL_DIR OUT_DIR STRATEGY``: the
instruction tuner's fit on 2 CPU ranks that Lightning launches itself (it re-executes this script for
rank 1, as it re-executes run.py in a pipeline), twice in one process, as IFD tunes twice. Like a
pipeline's finished stages, a finished first fit is not run again by the ranks launched for the second.
Rank 0 saves each tuned state dict and the launch variables left in its environment after each fit."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from data.config import TuningConfig
from data.instructions.records import InstructionRecord

WORLD = 2


def records(n: int = 4) -> list[InstructionRecord]:
    from tests.paper.standins import alpaca_records

    return [InstructionRecord(f"r{i}", **r) for i, r in enumerate(alpaca_records(n, seed=1))]


def tuning() -> TuningConfig:
    """Full fine-tuning, one record per micro-batch, the global batch the whole data: 2 epochs are 2
    optimizer steps over the same 4 records whatever the number of ranks."""
    return TuningConfig(mode="full", lr=1e-3, epochs=2, batch_size=4, micro_batch_size=1, max_length=256)


def tuned_state(model_dir: str, hardware: Any, lr: float = 1e-3, batch_size: int = 4) -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data.instructions.tuning import tune

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    cfg = tuning()
    cfg.lr, cfg.batch_size = lr, batch_size
    out = tune(model, tokenizer, records(), cfg, seed=0, hardware=hardware)
    if out is None:
        return None
    return {k: v.detach().cpu().clone() for k, v in out.state_dict().items()}, str(
        next(out.parameters()).device
    )


def main() -> None:
    from runners.distributed import WorkerFinished

    model_dir, out_dir, strategy = sys.argv[1:4]
    out = Path(out_dir)
    hardware = SimpleNamespace(accelerator="cpu", devices=WORLD, strategy=strategy, precision="32-true")
    rank0 = "LOCAL_RANK" not in os.environ
    try:
        for fit, lr in (("first", 1e-3), ("second", 5e-4)):
            if (out / f"{fit}.pt").exists():  # done before this rank was launched: a finished stage
                continue
            state = tuned_state(model_dir, hardware, lr=lr)
            if rank0:
                left = {v: os.environ.get(v) for v in ("LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT")}
                left["group"] = torch.distributed.is_initialized()
                torch.save({"state": state[0], "device": state[1], "env": left}, out / f"{fit}.pt")
    except WorkerFinished:
        (out / f"rank{os.environ['LOCAL_RANK']}.left.{os.getpid()}").write_text(json.dumps(fit))


if __name__ == "__main__":
    main()
