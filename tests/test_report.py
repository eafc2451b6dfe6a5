"""runners.report on a hand-written sweep (no training): golden table, missing cells, statistics, inference.

tests/fixtures/sweep_erc is `python run.py -m method=erc,sac env.task=cartpole_swingup,walker_walk
seed=0,1,2` with made-up numbers: sac/cartpole_swingup/seed=1 never wrote results.json and
sac/walker_walk/seed=2 failed, so 10 of 12 jobs completed.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from runners.aggregate import bootstrap_ci, iqm, mean_std
from runners.report import main, swept_params

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path("tests/fixtures/sweep_erc")  # relative to ROOT, so the table names it the same on any machine
GOLDEN = ROOT / "tests/golden/erc_report.md"


# A number as the report prints it (not one inside a word such as `MseLossBackward0` or `0th`).
NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![\w.])")


def last_digit(number: str) -> float:
    """One unit in the last printed digit: 0.1 for "28.3", 1e-4 for "0.0143", 1e-6 for "1.5e-05"."""
    mantissa, _, exponent = number.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def assert_cell(actual: str, expected: str, where: str = "") -> None:
    """Text exactly; a number printed with a decimal point within one unit of its last printed digit (the
    statistics behind it are sums whose last bits vary with the CPU); an integer (a count) exactly."""
    got, want = NUMBER.split(actual), NUMBER.split(expected)
    assert len(got) == len(want) and got[::2] == want[::2], f"{where}: {actual!r} != {expected!r}"
    for a, e in zip(got[1::2], want[1::2], strict=True):
        if "." in e or "e" in e:
            unit = min(last_digit(a), last_digit(e))
            assert abs(float(a) - float(e)) <= unit * (1 + 1e-9), f"{where}: {actual!r} != {expected!r}"
        else:
            assert a == e, f"{where}: {actual!r} != {expected!r}"


def markdown_cells(text: str) -> list[list[str]]:
    """The report line by line: a table row as its cells, any other line as one cell."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else [line]
        for line in text.splitlines()
    ]


def assert_report_matches(actual: str, expected: str) -> None:
    """The same markdown, compared cell by cell after parsing (not byte for byte)."""
    got, want = markdown_cells(actual), markdown_cells(expected)
    assert len(got) == len(want), f"{len(got)} lines, expected {len(want)}:\n{actual}"
    for i, (row, ref) in enumerate(zip(got, want, strict=True), 1):
        assert len(row) == len(ref), f"line {i}: {row} != {ref}"
        for j, (cell, ref_cell) in enumerate(zip(row, ref, strict=True), 1):
            assert_cell(cell, ref_cell, f"line {i}, cell {j}")


def table(text: str, section: str) -> dict[str, dict[str, str]]:
    """The markdown table under `## {section}`: row label -> column header -> cell."""
    lines = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    header, _, *rows = (cells for cells in markdown_cells("\n".join(lines)) if len(cells) > 1)
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def run_report(sweep: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI end to end; returns what it printed, after checking it matches table.md."""
    assert main([str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "table.md").read_text()
    return printed


@pytest.fixture
def fixture_report(tmp_path, monkeypatch, capsys) -> tuple[str, Path]:
    monkeypatch.chdir(ROOT)
    return run_report(FIXTURE, tmp_path, capsys), tmp_path


def test_golden_table(fixture_report):
    text, out = fixture_report
    assert_report_matches(text, GOLDEN.read_text())

    # The numbers, by hand. erc on cartpole_swingup: returns 820, 840, 860 -> mean 840, sample std 20.
    returns = table(text, "eval_return (↑)")
    assert_cell(returns["cartpole_swingup"]["erc"], "**840.0 ± 20.0 (n=3)**")
    # sac on walker_walk, two seeds: 500, 540 -> mean 520, std sqrt(2 * 20²) = 28.28.
    assert_cell(returns["walker_walk"]["sac"], "520.0 ± 28.3 (n=2)")
    # IQM over rows for erc: sorted returns 610 630 650 820 840 860, drop one each end -> 735.
    assert np.mean([630, 650, 820, 840]) == pytest.approx(735.0)
    assert_cell(returns["IQM over rows"]["erc IQM [95% CI]"], "**735.0 [720.0, 750.0]**")
    # sac has 4 returns (500 540 780 800) -> middle two -> 660; lower is better for td_error_mean (↓).
    assert_cell(returns["IQM over rows"]["sac IQM [95% CI]"], "660.0 [640.0, 670.0]")
    assert "## td_error_mean (↓)" in text
    # The paper number exists for cartpole_swingup only; cheetah_run is not in the sweep.
    assert "| 850.0 | 790.0 |" in text
    assert "| walker_walk |" in text and "cheetah_run" not in text

    with (out / "table.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 3  # envs x methods x metrics
    header = "env,method,metric,n,expected,mean,std,iqm,ci_low,ci_high,paper"
    assert list(rows[0]) == header.split(",")
    first = rows[0]
    assert (first["env"], first["method"], first["metric"]) == ("cartpole_swingup", "erc", "eval_return")
    assert float(first["mean"]) == pytest.approx(840.0) and float(first["std"]) == pytest.approx(20.0)
    assert float(first["paper"]) == 850.0  # copied from the experiment config

    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_and_missing_jobs_are_marked(fixture_report, tmp_path, monkeypatch, capsys):
    text, _ = fixture_report
    assert "10/12 runs completed" in text
    assert "- `method=sac env.task=cartpole_swingup seed=1` — no results.json" in text
    assert (
        "- `method=sac env.task=walker_walk seed=2` — failed: "
        "RuntimeError: Function 'MseLossBackward0' returned nan values in its 0th output." in text
    )

    # Take away sac's two completed walker_walk seeds: the whole cell is missing (and erc, the only column
    # left with numbers in that row, is no longer bold).
    sweep = tmp_path / "sweep"
    shutil.copytree(ROOT / FIXTURE, sweep)
    for seed in (0, 1):
        (sweep / f"env.task=walker_walk,method=sac,seed={seed}" / "results.json").unlink()
    text = run_report(sweep, tmp_path / "out", capsys)
    assert_cell(
        " | ".join(table(text, "eval_return (↑)")["walker_walk"].values()),
        "walker_walk | 630.0 ± 20.0 (n=3) | 630.0 [610.0, 650.0] | missing (0/3) | — | — | —",
    )
    assert "(1/2 rows)" in text  # sac's aggregate covers cartpole_swingup only, and says so
    assert "8/12 runs completed" in text


def test_nothing_to_report_exits_2(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no results.json and no multirun.yaml" in capsys.readouterr().err


def test_iqm_mean_std_by_hand():
    # 8 values: trim 25% (2) from each end -> mean of 3 4 5 6.
    assert iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(4.5)
    assert mean_std([820.0, 840.0, 860.0]) == pytest.approx((840.0, 20.0))
    mean, std = mean_std([3.0])
    assert mean == 3.0 and np.isnan(std)


def test_bootstrap_ci_is_deterministic_and_covers_estimate():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0])
    lo, hi = bootstrap_ci([x], iqm, seed=0)
    assert lo <= iqm(x) <= hi and lo < hi
    assert bootstrap_ci([x], iqm, seed=0) == (lo, hi)


def test_bootstrap_resamples_within_strata():
    # Every replicate keeps 3 draws from the zeros stratum and 5 from the ones: the count of ones is always 5.
    strata = [np.zeros(3), np.ones(5)]
    assert bootstrap_ci(strata, lambda s, axis: (s == 1).sum(axis=axis)) == (5.0, 5.0)
    # And the draws do vary within a stratum.
    lo, hi = bootstrap_ci([np.array([0.0, 10.0]), np.array([100.0, 100.0, 100.0])], np.mean)
    assert lo < hi


def test_command_line_sweep_wins_over_sweeper_params():
    multirun = {
        "hydra": {
            "sweeper": {"params": {"method": "erc,sac", "env.task": "a,b,c", "seed": "0,1,2"}},
            "overrides": {"task": ["experiment=erc_dmc", "env.task=a,b", "seed=0"]},
        }
    }
    assert swept_params(multirun) == {"method": ["erc", "sac"], "env.task": ["a", "b"]}


def test_inferred_spec_without_report(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params: null\n  overrides:\n    task:\n    - method=erc,sac\n    - seed=0\n"
    )
    for method, ret in [("erc", 1.5), ("sac", 2.5)]:
        record = {
            "method": method,
            "env": "cartpole_swingup",
            "scale": "smoke",
            "seed": 0,
            "status": "completed",
            "metrics": {"eval_return": ret, "td_error_mean": 0.1},
            "curves": {"eval_return": [[500, 0.0], [1000, ret]]},
            "error": None,
            "overrides": [f"method={method}", "seed=0"],
            "config": {"method": {"name": method}, "seed": 0, "report": None},
        }
        (sweep / f"method={method},seed=0").mkdir()
        (sweep / f"method={method},seed=0" / "results.json").write_text(json.dumps(record))
    text = run_report(sweep, tmp_path / "out", capsys)
    assert "# Sweep sweep" in text
    assert "| rows | erc | sac |" in text
    assert "| all | 1.5 (n=1) | 2.5 (n=1) |" in text
    assert "## eval_return\n" in text and "## td_error_mean\n" in text  # no direction known: no arrow
    assert "IQM" not in text.split("## Runs")[0]
    assert "All 2 runs completed." in text
    assert (tmp_path / "out" / "curves.png").is_file()


def _failed_record(**fields: object) -> dict:
    return {
        "method": "erc",
        "env": "cartpole_fly",
        "scale": "smoke",
        "seed": 0,
        "status": "failed",
        "metrics": {},
        "curves": {},
        "overrides": ["method=erc", "env.task=cartpole_fly"],
        "config": {"method": {"name": "erc"}, "seed": 0, "report": None},
        **fields,
    }


def test_failure_reason_is_the_errors_message_not_the_last_traceback_line(tmp_path, capsys):
    """Issue 18.14: the traceback of a Hydra-wrapped error ends in "full_key: env"; the report gives the
    message (which names the valid tasks). Records from before error_message keep the old reason."""
    from runners.report import failure_reason

    trace = "Traceback (most recent call last):\n  ...\nInstantiationException: in call\nfull_key: env\n"
    message = "ValueError: env.task='cartpole_fly' is not a DMControl task;\nvalid tasks: cartpole_swingup"
    sweep = tmp_path / "sweep"
    for name, record in [
        ("new", _failed_record(error=trace, error_message=message)),
        ("old", _failed_record(error=trace, seed=1)),
    ]:
        (sweep / name).mkdir(parents=True)
        (sweep / name / "results.json").write_text(json.dumps(record))
    assert main([str(sweep), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert (
        "— failed: ValueError: env.task='cartpole_fly' is not a DMControl task; valid tasks: cartpole_swingup"
        in text
    )
    assert failure_reason({"error": trace}) == ": full_key: env"
    assert failure_reason({"status": "running"}) == ""


@pytest.mark.slow
def test_a_failed_run_stores_its_message_and_the_report_shows_it(compose, tmp_path, capsys, monkeypatch):
    """An error inside the run, raised where Hydra instantiates the env (so wrapped, ending in full_key)."""
    import data.dmc
    from runners.execute import execute

    def refuse(self, *args: object, **kwargs: object) -> None:
        raise ValueError("env.task='cartpole_fly' is not a DMControl task; valid tasks: cartpole_swingup")

    monkeypatch.setattr(data.dmc.DMCEnv, "__init__", refuse)
    run = tmp_path / "sweep" / "bad"
    with pytest.raises(Exception, match="not a DMControl task"):
        execute(compose(["method=erc", "scale=smoke", "logger=none"]), out_dir=run)
    record = json.loads((run / "results.json").read_text())
    assert record["status"] == "failed" and record["error"].strip().endswith("full_key: env")  # whole
    assert record["error_message"].startswith("ValueError: env.task='cartpole_fly' is not a DMControl task")
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    assert (
        "failed: ValueError: env.task='cartpole_fly' is not a DMControl task; valid tasks: cartpole_swingup"
        in (capsys.readouterr().out)
    )
