"""Every `python run.py ...` command the README shows composes as written (issue 12, item 6).

Each command line of a fenced code block that starts with ``python run.py`` is split as a shell would
(quotes kept together, a trailing ``# comment`` dropped) and composed in-process, as ``--cfg job`` would:
the command line's own checks (runners.validate: types, schemas, the first value of each sweep) and then
Hydra's composition of the whole line, ``hydra.*`` overrides included. Nothing runs, nothing is imported
beyond the schemas, and the machine is not asked for a GPU or the hub (the README marks those "online").
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from runners.schemas import register_all
from runners.validate import _first_of_sweeps, split_argv, validate_overrides

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_commands(text: str) -> list[str]:
    """The ``python run.py`` lines of the README's code blocks, in order (a ``$ `` prompt line is an
    example of an error message, not a command to run)."""
    return [
        line.strip()
        for block in FENCE.findall(text)
        for line in block.splitlines()
        if line.strip().startswith("python run.py")
    ]


COMMANDS = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def argv_of(command: str) -> list[str]:
    return shlex.split(command, comments=True)[2:]


def test_the_readme_shows_commands_for_every_method() -> None:
    methods = {a.split("=", 1)[1] for c in COMMANDS for a in argv_of(c) if a.startswith("method=")}
    expected = {"erc", "sac", "h2o", "ifd", "alpagasus", "sbcl", "diffusion_cls", "chain", "scool", "mera"}
    assert expected | {"instructzero"} <= methods


def test_the_status_table_has_a_current_row_for_every_method() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[: text.index("## Set-up")]
    rows = [line for line in table.splitlines() if line.startswith("| `") and "status" not in line]
    named = {m for row in rows for m in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert named == {p.stem for p in (ROOT / "conf" / "method").glob("*.yaml")}
    assert len(rows) == 10 and all(re.search(r"\(\d{4}\.\d{5}\)", row) for row in rows)
    assert "planned" not in table and all("runs (scale=small)" in row for row in rows)


def test_comments_and_quotes_are_split_as_a_shell_would() -> None:
    line = 'python run.py method=h2o method.prompt="Why is the sky blue?"   # a comment'
    assert argv_of(line) == ["method=h2o", "method.prompt=Why is the sky blue?"]


def compose_command(command: str) -> DictConfig:
    """What ``<command> --cfg job`` checks and composes, with the hydra node kept."""
    argv = argv_of(command)
    validate_overrides([*argv, "--cfg", "job"])
    overrides, _ = split_argv(argv)
    register_all()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=_first_of_sweeps(overrides), return_hydra_config=True)


@pytest.mark.parametrize(
    "command",
    [
        "python run.py method=erc method.betaa=1",
        "python run.py -m method=nope,erc seed=0,1",
        "python run.py hydra.launcher.partitionn=gpu   # a typo in a hydra key",
    ],
)
def test_a_command_that_does_not_compose_is_caught(command: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - ConfigError, or Hydra's own error for hydra.* keys
        compose_command(command)


@pytest.mark.parametrize("command", COMMANDS, ids=range(len(COMMANDS)))
def test_readme_command_composes(command: str) -> None:
    cfg = compose_command(command)
    assert cfg.method.name and cfg.hydra.job.name
