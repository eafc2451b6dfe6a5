"""Every package the code imports is declared where a user installs it, and the committed locks match
pyproject.toml (a forgotten `make lock` fails here, not on a user's fresh machine)."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("data", "methods", "runners")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lock(name: str) -> dict[str, str]:
    """name -> exact version of a lock file (`pkg==1.2.3` lines)."""
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
            assert match, f"{name}: not an exact pin: {line!r}"
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _modules() -> list[str]:
    names = []
    for package in PROJECT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _imported_top_levels(path: Path) -> set[str]:
    """Top-level module names of every import in a file, lazy ones inside functions included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_locks_pin_every_requirement_of_pyproject_within_its_range() -> None:
    core, dev = _lock("requirements.lock"), _lock("requirements-dev.lock")
    for lock, requirements in (
        (core, PYPROJECT["dependencies"]),
        (dev, PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["dev"]),
    ):
        for text in requirements:
            req = Requirement(text)
            if req.name == "torch":  # installed first by its own pin, outside the locks
                continue
            version = lock.get(canonicalize_name(req.name))
            assert version is not None, f"{req.name} is in pyproject.toml but not locked: run `make lock`"
            assert req.specifier.contains(version, prereleases=True), (
                f"{req.name}=={version} is locked but pyproject.toml asks {req.specifier}: run `make lock`"
            )
    assert "torch" not in core and "torch" not in dev
    disagree = {n: (v, dev[n]) for n, v in core.items() if dev.get(n) != v}
    assert not disagree, f"core and dev locks pin these differently: {disagree}"


def test_every_package_the_code_imports_is_in_the_core_lock() -> None:
    """A user who ran `make run` gets every package that data/, methods/ and runners/ import; only the
    online extra's packages (lm-eval, torchvision) may be missing there, and only behind a lazy import."""
    core = set(_lock("requirements.lock")) | {"torch"}
    online = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["optional-dependencies"]["online"]}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for package in PROJECT_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for name in _imported_top_levels(path):
                if name in sys.stdlib_module_names or name in PROJECT_PACKAGES or name == "__future__":
                    continue
                dists = {canonicalize_name(d) for d in distributions.get(name, [])}
                if not dists:
                    if name in {"lm_eval", "torchvision"}:  # the online extra, maybe not installed here
                        continue
                    missing[f"{path.relative_to(ROOT)}: {name}"] = "no installed distribution provides it"
                elif not dists & (core | online):
                    missing[f"{path.relative_to(ROOT)}: {name}"] = f"{sorted(dists)} not in requirements.lock"
    assert not missing, missing


@pytest.mark.parametrize("module", _modules())
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)
