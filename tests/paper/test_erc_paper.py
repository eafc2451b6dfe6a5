"""`make table-erc SCALE=paper`, rehearsed: the paper's grid as composed, and one cell of it run end to end.

The grid test reads the sweep the experiment file gives at each scale (no training). The rehearsal runs
`run.py -m experiment=erc_dmc scale=paper` with only sizes overridden (one task, one seed, a few hundred
steps, a small buffer and evaluation), then the report, and checks that the three methods' cells, the paper's
numbers beside them and the IQM over tasks come out, and that everything not a size stayed the paper's.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paper.cli import report, sweep_grid

ROOT = Path(__file__).resolve().parent.parent.parent
EXPERIMENT = "conf/experiment/erc_dmc.yaml"
# The 26 DMControl state tasks of the paper's figure, as the official repo's curves name them.
PAPER_TASKS = [
    *("acrobot-swingup", "ball_in_cup-catch", "cartpole-balance", "cartpole-balance_sparse"),
    *("cartpole-swingup", "cartpole-swingup_sparse", "cheetah-run", "finger-spin", "finger-turn_easy"),
    *("finger-turn_hard", "fish-swim", "fish-upright", "hopper-hop", "hopper-stand", "humanoid-run"),
    *("humanoid-stand", "humanoid-walk", "pendulum-swingup", "point_mass-easy", "reacher-easy"),
    *("reacher-hard", "swimmer-swimmer6", "swimmer-swimmer15", "walker-run", "walker-stand", "walker-walk"),
]


def test_paper_scale_sweeps_the_papers_26_tasks_by_10_seeds_and_small_scale_3_by_3() -> None:
    from dm_control import suite

    grid, cfg = sweep_grid("erc_dmc", "paper")
    tasks = [t.replace("-", "_") for t in PAPER_TASKS]
    assert grid["env.task"] == tasks
    assert set(tasks) <= {f"{domain}_{task}" for domain, task in suite.ALL_TASKS}
    assert grid["seed"] == [str(s) for s in range(10)] and grid["method"] == ["erc", "sac", "td3"]
    # The paper's numbers for every task of the grid, for the three methods that run.
    paper = cfg.report.paper.metrics.eval_return
    assert sorted(paper) == sorted(tasks) and all(set(paper[t]) == {"erc", "sac", "td3"} for t in tasks)
    assert paper.hopper_hop.erc == pytest.approx(387) and paper.hopper_hop.sac == pytest.approx(100)
    assert paper.hopper_hop.td3 == pytest.approx(42) and paper.humanoid_run.td3 == pytest.approx(15)

    small, _ = sweep_grid("erc_dmc", "small")
    assert small == {
        "method": ["erc", "sac", "td3"],
        "env.task": ["cartpole_swingup", "walker_walk", "cheetah_run"],
        "seed": ["0", "1", "2"],
    }


def test_report_of_a_paper_sweep_with_no_results_yet_expects_all_780_jobs(tmp_path) -> None:
    from omegaconf import OmegaConf

    from runners.report import make_report

    _, cfg = sweep_grid("erc_dmc", "paper")
    OmegaConf.save(cfg, tmp_path / "multirun.yaml")  # what Hydra's basic sweeper writes before the jobs
    text = make_report(tmp_path, experiment=ROOT / EXPERIMENT)
    assert "0/780 runs completed" in text


@pytest.mark.parametrize("method", ["erc", "sac", "td3"])
def test_paper_budget_runs_erc_sac_and_td3_at_the_same_update_to_data_ratio(compose, method: str) -> None:
    cfg = compose(["experiment=erc_dmc", "scale=paper", f"method={method}"])
    m = cfg.method
    assert (m.utd_ratio, m.total_steps, m.learning_starts, m.buffer_size) == (5, 1_000_000, 25_000, 1_000_000)
    assert (m.eval_every, m.eval_episodes, cfg.env.action_repeat) == (10_000, 10, 1)
    assert (m.batch_size, m.gamma, m.tau, m.policy_every) == (256, 0.99, 0.005, 2)
    if method == "td3":
        assert (m.policy_noise, m.noise_clip, m.expl_noise) == (0.2, 0.5, 0.1)
    else:
        assert m.beta == pytest.approx(0.005 if method == "erc" else 0.0)


def markdown_table(text: str, heading: str) -> dict[str, dict[str, str]]:
    """The table under ``## heading`` as {first cell: {column: cell}}."""
    block = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(head, row, strict=True)) for row in rows}


@pytest.mark.slow
def test_rehearsal_of_the_paper_table_one_task_one_seed(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    sizes = [
        "env.task=cartpole_swingup",
        "seed=0",
        "method.total_steps=600",
        "method.learning_starts=550",
        "method.eval_every=600",
        "method.eval_episodes=1",
        "method.buffer_size=600",
        "method.td_probe_size=256",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    args = ["-m", "experiment=erc_dmc", "scale=paper", *sizes, "logger=none", f"hydra.sweep.dir={sweep}"]
    run = subprocess.run(
        [sys.executable, "run.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]

    records = {r["method"]: r for r in (json.loads(p.read_text()) for p in sweep.rglob("results.json"))}
    assert sorted(records) == ["erc", "sac", "td3"]
    for name, record in records.items():
        assert record["status"] == "completed" and record["scale"] == "paper"
        m = record["config"]["method"]
        # Sizes are ours; everything else is the paper's configuration.
        assert (m["total_steps"], m["learning_starts"], m["eval_episodes"]) == (600, 550, 1)
        assert (m["utd_ratio"], m["batch_size"], m["policy_every"]) == (5, 256, 2)
        if name == "td3":
            assert (m["policy_noise"], m["noise_clip"], m["expl_noise"]) == (0.2, 0.5, 0.1)
        else:
            assert m["beta"] == pytest.approx(0.005 if name == "erc" else 0.0)
        env_cfg = record["config"]["env"]
        assert (env_cfg["task"], env_cfg["action_repeat"]) == ("cartpole_swingup", 1)
        assert len(record["curves"]["eval_return"]) == 1

    text = report(sweep, EXPERIMENT, env)
    assert "scale: paper" in text and "3/3 runs completed" in text
    returns = markdown_table(text, "eval_return (↑)")
    row = returns["cartpole_swingup"]
    for name in ("erc", "sac", "td3"):
        ours = float(row[name].strip("*").split()[0])
        # The table prints 3 significant digits.
        assert ours == pytest.approx(records[name]["metrics"]["eval_return"], rel=5e-3, abs=5e-3)
        assert "(n=1)" in row[name]
        assert row[f"{name} IQM [95% CI]"].strip("*").startswith(row[name].strip("*").split()[0])
    assert float(row["paper erc"]) == pytest.approx(867.0) and float(row["paper sac"]) == pytest.approx(864.0)
    assert float(row["paper td3"]) == pytest.approx(865.0)
    iqm = returns["IQM over rows"]
    assert all(iqm[f"{name} IQM [95% CI]"] != "—" for name in ("erc", "sac", "td3"))
    assert "sliding-window-smoothed" in text

    with (sweep / "table.csv").open() as f:
        cells = [r for r in csv.DictReader(f) if r["metric"] == "eval_return"]
    paper = {r["method"]: float(r["paper"]) for r in cells}
    assert paper == pytest.approx({"erc": 867.0, "sac": 864.0, "td3": 865.0})
