"""MerA's table as the issue asks for it: rows = methods, columns = K, plus accuracy vs K and the gains.

`python -m methods.mera.table <sweep dir>` reads the sweep's results.json files (K is an inner loop of
each run, so every run holds acc_k2 ... acc_k16) and writes table_by_k.md and accuracy_vs_k.png beside
the generic report of `python -m runners.report`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

ORDER = (
    "scratch",
    "full_ft",
    "single",
    "single_oracle",
    "fusion",
    "average",
    "mera",
    "single_same_track",
    "single_same_track_oracle",
    "average_same_track",
    "mera_same_track",
)
LABELS = {
    "scratch": "adapter from scratch",
    "full_ft": "full fine-tuning",
    "single": "single adapter (mean over sources)",
    "single_oracle": "best single adapter (oracle: picked by test accuracy)",
    "single_same_track": "same-track single adapter (mean)",
    "single_same_track_oracle": "best same-track single (oracle: picked by test accuracy)",
    "fusion": "AdapterFusion",
    "average": "average (no alignment)",
    "mera": "MerA-OT",
    "average_same_track": "same-track average",
    "mera_same_track": "same-track MerA-OT",
}


def target_track(method: dict[str, Any]) -> str:
    from data.text_tasks import GLUE_TRACKS, SPECS

    return GLUE_TRACKS[method["target"]] if method["task_source"] == "glue" else SPECS[method["target"]].track


def single_rows(metrics: dict[str, float], tracks: dict[str, str], track: str) -> dict[str, dict[str, float]]:
    """From a `single` run's per-source accuracies: per K the mean and the test-selected maximum over
    every source, and over the sources tagged with the target's track."""
    per_k: dict[str, dict[str, list[float]]] = {}
    for key, value in metrics.items():
        m = re.fullmatch(r"(acc|f1)_k(\d+)/(.+)", key)  # accuracy and (MRPC, QQP) F1 per source
        if m:
            groups = per_k.setdefault(f"{m.group(1)}_k{m.group(2)}", {"all": [], "same": []})
            groups["all"].append(value)
            if tracks.get(m.group(3)) == track:
                groups["same"].append(value)
    rows: dict[str, dict[str, float]] = {
        "single": {},
        "single_oracle": {},
        "single_same_track": {},
        "single_same_track_oracle": {},
    }
    for k, groups in per_k.items():
        rows["single"][k], rows["single_oracle"][k] = float(np.mean(groups["all"])), max(groups["all"])
        if groups["same"]:
            rows["single_same_track"][k] = float(np.mean(groups["same"]))
            rows["single_same_track_oracle"][k] = max(groups["same"])
    return rows


Runs = dict[str, list[dict[str, float]]]


def load(sweep: Path) -> tuple[dict[tuple[str, str], Runs], dict[str, Any]]:
    """Completed runs per (backbone, target) and, in each, per table row; and the stored report spec."""
    groups: dict[tuple[str, str], Runs] = {}
    report: dict[str, Any] = {}
    for path in sorted(sweep.rglob("results.json")):
        record = json.loads(path.read_text())
        if record.get("status") != "completed":
            continue
        cfg = record.get("config") or {}
        report = report or (cfg.get("report") or {})
        variant = cfg["method"]["variant"]
        group = (str(cfg["method"].get("backbone") or ""), str(cfg["method"]["target"]))
        by_variant = groups.setdefault(group, {})
        sources = path.parent / "sources.json"
        if variant == "single" and sources.is_file():
            tracks = {s["name"]: s["track"] for s in json.loads(sources.read_text())}
            for name, row in single_rows(record["metrics"], tracks, target_track(cfg["method"])).items():
                by_variant.setdefault(name, []).append(row)
        else:
            by_variant.setdefault(variant, []).append(record["metrics"])
    return dict(sorted(groups.items())), report


def shots_of(runs: dict[str, list[dict[str, float]]]) -> list[int]:
    found = {
        int(m.group(1))
        for rs in runs.values()
        for r in rs
        for k in r
        if (m := re.fullmatch(r"acc_k(\d+)", k))
    }
    return sorted(found)


def stats(
    runs: list[dict[str, float]], k: int, scale: float = 1.0, metric: str = "acc"
) -> tuple[float, float, int]:
    """Mean, std and count of {metric}_k{k} (acc, f1) over the runs, times ``scale`` (100: percent)."""
    key = f"{metric}_k{k}"
    vals = scale * np.array([r[key] for r in runs if key in r], dtype=float)
    if not len(vals):
        return float("nan"), float("nan"), 0
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, len(vals)


def percent_scale(report: dict[str, Any]) -> float:
    """100 when the report spec prints the accuracies in percent (`report.percent`), else 1: results.json
    holds fractions, as runners.report reads them."""
    percent = report.get("percent") or []
    return 100.0 if percent is True or any(str(m).startswith("acc_k") for m in percent) else 1.0


def make_table(sweep: Path) -> str:
    """table_by_k.md in the paper's layout: per backbone and target, methods × K, test accuracy and (MRPC,
    QQP) F1, with same-track MerA's gain over the better of full fine-tuning and adapter tuning beside the
    paper's gain on that target."""
    groups, report = load(sweep)
    if not groups:
        raise FileNotFoundError(f"no completed results.json under {sweep}")
    scale = percent_scale(report)
    unit, points, digits = (" (%)", "points", 1) if scale == 100.0 else ("", "accuracy", 3)
    lines = [f"# {report.get('title', 'MerA few-shot accuracy')}", ""]
    plotted = None
    for (backbone, target), runs in groups.items():
        ks = shots_of(runs)
        variants = [v for v in ORDER if v in runs] + [v for v in runs if v not in ORDER]
        if len(groups) > 1 or backbone:
            lines += [f"## {backbone or 'backbone'} · {target}", ""]
        metrics = [
            "acc",
            *(["f1"] if any(f"f1_k{k}" in r for rs in runs.values() for r in rs for k in ks) else []),
        ]
        means = {}
        for metric in metrics:
            means[metric] = {v: {k: stats(runs[v], k, scale, metric) for k in ks} for v in variants}
            what = "Test accuracy" if metric == "acc" else "Test F1 (positive class)"
            lines += [
                f"{what}{unit} on the held-out target {target}, mean ± std over seeds (n), sweep `{sweep}`.",
                "",
                *rows_table(means[metric], variants, ks, digits),
                "",
            ]
        plotted = plotted or (means["acc"], variants, ks)
        lines += gain_lines(means["acc"], ks, target, report, scale, points, digits)
    if plotted and plot(sweep / "accuracy_vs_k.png", *plotted, unit):
        lines += ["![accuracy vs K](accuracy_vs_k.png)"]
    text = "\n".join(lines).rstrip("\n") + "\n"
    (sweep / "table_by_k.md").write_text(text)
    return text


def rows_table(means: dict, variants: list[str], ks: list[int], digits: int) -> list[str]:
    """Methods × K as markdown, the best mean of each column in bold."""
    best = {k: max(means[v][k][0] for v in variants) for k in ks}
    lines = ["| method | " + " | ".join(f"K={k}" for k in ks) + " |", "|---|" + "---:|" * len(ks)]
    for v in variants:
        cells = []
        for k in ks:
            m, s, n = means[v][k]
            text = f"{m:.{digits}f} ± {s:.{digits}f} ({n})" if n else "missing"
            cells.append(f"**{text}**" if n and m == best[k] else text)
        lines.append(f"| {LABELS.get(v, v)} | " + " | ".join(cells) + " |")
    return lines


def gain_lines(
    means: dict, ks: list[int], target: str, report: dict[str, Any], scale: float, points: str, digits: int
) -> list[str]:
    """Same-track MerA-OT minus the better of full fine-tuning and adapter tuning, per K, and the paper's
    gain: on this target when the paper reports one, else every gain it reports."""
    base = [v for v in ("full_ft", "scratch") if v in means]
    if "mera_same_track" not in means or not base:
        return []
    gains = [means["mera_same_track"][k][0] - max(means[b][k][0] for b in base) for k in ks]
    paper = {str(t): g for t, g in (report.get("paper_gains") or {}).items()}  # fractions, as results.json
    own = {t: g for t, g in paper.items() if t.lower() == target.lower()}
    text = (
        f"Same-track MerA-OT minus the better of full fine-tuning and adapter-from-scratch ({points}): "
        + ", ".join(f"K={k}: {g:+.{digits}f}" for k, g in zip(ks, gains, strict=True))
    )
    if own or paper:
        shown = own or paper
        text += ". Paper (few-shot GLUE, BERT/RoBERTa): " + ", ".join(
            f"{t} {g * scale:+.{digits}f}" for t, g in shown.items()
        )
    return [text + ".", ""]


def plot(path: Path, means: dict, variants: list[str], ks: list[int], unit: str = "") -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, v in enumerate(variants):
        m = np.array([means[v][k][0] for k in ks])
        s = np.nan_to_num(np.array([means[v][k][1] for k in ks]))
        style = "-" if "mera" in v else "--"
        ax.plot(ks, m, style, marker="o", color=f"C{i}", label=LABELS.get(v, v))
        ax.fill_between(ks, m - s, m + s, color=f"C{i}", alpha=0.1, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("K (shots per class)")
    ax.set_ylabel(f"test accuracy{unit}")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m methods.mera.table", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    args = parser.parse_args(argv)
    try:
        print(make_table(args.sweep), end="")
    except FileNotFoundError as ex:
        print(f"table: {ex}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
