"""Packages of an optional extra (pyproject.toml), asked for by name before the run needs them."""

from __future__ import annotations

import importlib.util


def require(module: str, extra: str, key: str) -> None:
    """A ValueError naming ``key`` and the install command when ``module`` is not installed (its import is
    left to the caller: finding the spec imports nothing)."""
    if importlib.util.find_spec(module) is None:
        raise ValueError(
            f"{key} needs the {module} package, which is not installed: pip install -e '.[{extra}]' "
            f"(make install-{extra})"
        )
