"""PASS/MISS lines for a benchmark's targets, one format for every bench (``make bench`` greps them).

A target is a measured ratio against a bound; a bench reports, it does not assert, so a MISS changes
the printed verdict, never the exit code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Target:
    """``value`` (None when it could not be measured) against ``bound`` in ``direction`` ("<=" or ">=")."""

    name: str
    value: float | None
    bound: float
    direction: str = ">="
    note: str = ""  # e.g. why the run is too small for the verdict to count

    def __post_init__(self) -> None:
        if self.direction not in ("<=", ">="):
            raise ValueError(f"direction={self.direction!r}: choose '<=' or '>='")

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.bound if self.direction == "<=" else self.value >= self.bound

    def line(self, width: int = 48) -> str:
        """``name  value  (target >= bound)  PASS`` (or MISS, or NO VALUE), then the note."""
        verdict = {True: "PASS", False: "MISS", None: "NO VALUE"}[self.passed]
        value = "    -  " if self.value is None else f"{self.value:7.3f}"
        note = f"  [{self.note}]" if self.note else ""
        return f"{self.name:<{width}} {value}  (target {self.direction} {self.bound:g})  {verdict}{note}"


def print_targets(targets: list[Target], title: str = "targets") -> None:
    """A header and one line per target."""
    print(f"{title}:")
    width = max([len(t.name) for t in targets] + [20])
    for target in targets:
        print("  " + target.line(width))
