"""A run's resumable state: one file in the run dir, replaced atomically on every save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from runners.atomic import write_atomic


class Checkpointer:
    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, state: dict[str, Any]) -> None:
        write_atomic(self.path, lambda f: torch.save(state, f), mode="wb")

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)
