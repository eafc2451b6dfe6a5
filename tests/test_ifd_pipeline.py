"""IFD's pre-experience pick and the whole pipeline through run.py (smoke scale, SmolLM2 offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from methods.ifd.pre_experience import pick_pre_experience


def test_pre_experience_picks_evenly_from_each_clusters_middle_perplexity_band() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    embeddings = np.concatenate([c + 0.1 * rng.standard_normal((9, 2)) for c in centres])
    perplexities = np.tile(np.arange(1.0, 10.0), 3)  # 1..9 in each cluster: P25 = 3, P75 = 7
    picked = pick_pre_experience(embeddings, perplexities, clusters=3, per_cluster=3, seed=0)
    assert picked == pick_pre_experience(embeddings, perplexities, clusters=3, per_cluster=3, seed=0)
    # per cluster the band is perplexity 3..7; three evenly spaced picks are 3, 5 and 7
    assert sorted(perplexities[picked].tolist()) == [3.0, 3.0, 3.0, 5.0, 5.0, 5.0, 7.0, 7.0, 7.0]
    assert sorted(np.array(picked) // 9) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.mark.slow
def test_ifd_pipeline_smoke_run(cli, tmp_path: Path) -> None:
    out = cli("method=ifd", "scale=smoke", "logger=none", f"hydra.run.dir={tmp_path}", timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "results.json").read_text())
    metrics = record["metrics"]
    assert record["status"] == "completed"
    assert sorted(p.stem for p in (tmp_path / "stages").glob("*.json")) == sorted(
        ["data", "pre_experience", "score", "select", "tune", "evaluate"]
    )
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    selection = json.loads((tmp_path / "selection.json").read_text())
    kept = [s for s in scores if s["ifd"] <= 1.0]
    assert len(selection) == int(len(kept) * 0.25) == metrics["n_selected"]
    chosen = sorted((s for s in scores if s["id"] in set(selection)), key=lambda s: -s["ifd"])
    assert min(s["ifd"] for s in chosen) >= max(s["ifd"] for s in kept if s["id"] not in set(selection))
    assert 0.0 <= metrics["exact_match"] <= 100.0 and metrics["n_eval"] == 16
    assert (tmp_path / "tuned" / "adapter_config.json").exists()
