"""Tables and learning curves from a sweep: `python -m runners.report <sweep dir> [--out DIR]`.

Reads every results.json below a Hydra multirun dir, works out from multirun.yaml which jobs the sweep
should have run, and writes table.md, table.csv and curves.png (into the sweep dir or --out), then prints
the markdown. Only completed runs give numbers: a failed, interrupted or never-started job shows up as a
short cell and in the "Runs" section, never silently. No torch, so it runs anywhere the results are copied.

Which cell a job lands in: `report.rows` and `report.columns` name a results.json field (method, env, data,
model, scale, seed) or a dotted path into the record (config.method.beta). A job that wrote a record takes
its labels from it, failed or not. A job that never wrote one takes them from its overrides: method=x ->
method, env.task=x -> env, data/model/scale/seed=x -> the same field, k=x -> config.k. For our methods the
group choice equals method.name, so both ways give the same label.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runners.aggregate import bootstrap_ci, iqm, mean_std
from runners.results import RESULTS_FILE

# Override key -> results.json field, for jobs without a record and for inferring rows.
FIELD_OF_KEY = {
    "method": "method",
    "env.task": "env",
    "data": "data",
    "model": "model",
    "scale": "scale",
    "seed": "seed",
}
KEY_OF_FIELD = {v: k for k, v in FIELD_OF_KEY.items()}
CSV_STATS = ["n", "expected", "mean", "std", "iqm", "ci_low", "ci_high", "paper"]


class NoResultsError(FileNotFoundError):
    """The directory holds neither results.json files nor a multirun.yaml: nothing to report on."""


@dataclass
class Job:
    """One expected job of the sweep: the swept key=values that define it, and its record if it wrote one."""

    overrides: dict[str, str]
    record: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        return self.record.get("status", "running") if self.record else "missing"

    @property
    def done(self) -> bool:
        return self.status == "completed"


# ---------------------------------------------------------------- reading the sweep


def load_records(sweep: Path) -> list[dict[str, Any]]:
    """Every readable results.json below ``sweep``, in path order so the report is deterministic."""
    records = []
    for path in sorted(sweep.rglob(RESULTS_FILE)):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as ex:
            print(f"report: skipping unreadable {path}: {ex}", file=sys.stderr)
    return records


def swept_params(multirun: dict[str, Any]) -> dict[str, list[str]]:
    """Swept key -> values, merged as Hydra's BasicSweeper does: the command line wins over sweeper.params."""
    hydra = multirun.get("hydra") or {}
    params = (hydra.get("sweeper") or {}).get("params") or {}
    task = (hydra.get("overrides") or {}).get("task") or []
    lines = [f"{k}={v}" for k, v in params.items()] + [str(t) for t in task]
    swept: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        if override.is_sweep_override():
            swept[override.key_or_group] = list(override.sweep_string_iterator())
        else:  # `seed=0` on the command line replaces a `seed: 0,1,2` sweep from the experiment file
            swept.pop(override.key_or_group, None)
    return swept


def override_dict(overrides: list[str]) -> dict[str, str]:
    """["+a.b=1", "method=erc"] -> {"a.b": "1", "method": "erc"}, the strings Hydra wrote for the job."""
    out = {}
    for text in overrides:
        key, _, value = text.partition("=")
        out[key.lstrip("+~")] = value
    return out


def expected_jobs(records: list[dict[str, Any]], swept: dict[str, list[str]] | None) -> list[Job]:
    """The sweep's grid with each job's record attached (a completed one first).

    Records that match no grid point (say, from an earlier sweep into the same dir) are kept as jobs of
    their own: they are real results, and dropping them silently would hide them.
    """
    if swept is None:
        return [Job(override_dict(r.get("overrides") or []), r) for r in records]
    keys = list(swept)
    jobs = [Job(dict(zip(keys, combo, strict=True))) for combo in itertools.product(*swept.values())]
    given = [override_dict(r.get("overrides") or []) for r in records]
    used = set()
    for job in jobs:
        matches = [
            i
            for i, ov in enumerate(given)
            if i not in used and all(ov.get(k) == v for k, v in job.overrides.items())
        ]
        if matches:
            best = next((i for i in matches if records[i].get("status") == "completed"), matches[0])
            job.record = records[best]
            used.add(best)
    extra = [Job(override_dict(r.get("overrides") or []), r) for i, r in enumerate(records) if i not in used]
    return jobs + extra


# ---------------------------------------------------------------- the report spec and cell labels


def field_value(record: dict[str, Any], name: str) -> Any:
    """A top-level field (``env``) or a dotted path (``config.method.beta``); a group gives its name."""
    node: Any = record
    for part in name.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node.get("name", node) if isinstance(node, dict) else node


def job_label(job: Job, name: str, common: dict[str, str]) -> str:
    if job.record is not None:
        return str(field_value(job.record, name))
    key = KEY_OF_FIELD.get(name, name.removeprefix("config."))
    return job.overrides.get(key, common.get(name, "?"))


def infer_spec(title: str, swept_keys: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
    """A spec for a plain `python run.py -m ...` sweep: methods as columns, the other swept keys as rows."""
    done = [r for r in records if r.get("status") == "completed"]
    curves = [name for r in done for name in (r.get("curves") or {})]
    return {
        "title": title,
        "rows": [FIELD_OF_KEY.get(k, f"config.{k}") for k in swept_keys if k not in ("seed", "method")],
        "columns": "method",
        "metrics": sorted({m for r in done for m in r.get("metrics") or {}}),
        "higher_is_better": {},
        "rl": False,
        "curve": curves[0] if curves else None,
        # A metric to plot against the (single, numeric) row key, one line per column: e.g. perplexity
        # against the KV budget, one line per eviction policy.
        "plot_metric": None,
        "paper": None,
        # Metrics stored as fractions in [0, 1] that the table prints in percent, as the paper does:
        # `percent: true` (every metric) or a list of metric names. results.json, table.csv and the
        # paper numbers of the experiment file stay fractions; only the printed table is scaled.
        "percent": [],
    }


def report_spec(
    records: list[dict[str, Any]],
    multirun: dict[str, Any] | None,
    swept_keys: list[str],
    title: str,
    given: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``given`` (an experiment file's `report` node), else the first record's, else multirun.yaml's;
    what it leaves out is inferred."""
    if given is None:
        stored = (r["config"]["report"] for r in records if (r.get("config") or {}).get("report"))
        given = next(stored, None) or (multirun or {}).get("report") or {}
    spec = infer_spec(title, swept_keys, records) | {k: v for k, v in given.items() if v is not None}
    if isinstance(spec["rows"], str):
        spec["rows"] = [spec["rows"]]
    percent = spec.get("percent") or []
    spec["percent"] = list(spec["metrics"]) if percent is True else [str(m) for m in percent]
    paper = spec.get("paper") or {}
    spec["paper_source"] = paper.get("source")
    spec["paper"] = {
        str(m): {str(row): {str(c): v for c, v in cols.items()} for row, cols in table.items()}
        for m, table in (paper.get("metrics") or {}).items()
    }
    return spec


# ---------------------------------------------------------------- numbers


def fmt(x: float, scale: float = 1.0) -> str:
    """A number as the table prints it; ``scale`` 100 prints a fraction in percent."""
    x = x * scale
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.3g}"


def metric_scale(spec: dict[str, Any], metric: str) -> float:
    """100 for a metric the spec prints in percent (`report.percent`), else 1."""
    return 100.0 if metric in spec.get("percent", ()) else 1.0


@dataclass
class Cell:
    """One (row, column, metric): the seeds' values and their statistics."""

    values: np.ndarray
    expected: int

    def __post_init__(self) -> None:
        self.n = len(self.values)
        self.mean, self.std = mean_std(self.values) if self.n else (math.nan, math.nan)
        self.iqm = float(iqm(self.values)) if self.n else math.nan
        self.ci = bootstrap_ci([self.values]) if self.n else (math.nan, math.nan)

    def mean_text(self, scale: float = 1.0) -> str:
        if not self.n:
            return f"missing ({self.n}/{self.expected})"
        if self.n == 1:
            return f"{fmt(self.mean, scale)} (n=1)"
        return f"{fmt(self.mean, scale)} ± {fmt(self.std, scale)} (n={self.n})"

    def iqm_text(self, scale: float = 1.0) -> str:
        if not self.n:
            return "—"
        return f"{fmt(self.iqm, scale)} [{fmt(self.ci[0], scale)}, {fmt(self.ci[1], scale)}]"


def best_of(scores: dict[str, float], higher: bool | None) -> set[str]:
    """Columns to bold: the best score when the direction is known and at least two columns have one."""
    scores = {c: s for c, s in scores.items() if not math.isnan(s)}
    if higher is None or len(scores) < 2:
        return set()
    best = max(scores.values()) if higher else min(scores.values())
    return {c for c, s in scores.items() if s == best}


def bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


# ---------------------------------------------------------------- outputs


def metric_table(
    metric: str,
    cells: dict[tuple[tuple[str, ...], str], Cell],
    rows: list[tuple[str, ...]],
    cols: list[str],
    headers: list[str],
    spec: dict[str, Any],
) -> list[str]:
    """The markdown lines of one metric's section."""
    higher = spec["higher_is_better"].get(metric)
    arrow = {True: " (↑)", False: " (↓)"}.get(higher, "")
    scale = metric_scale(spec, metric)
    unit = " (%)" if scale == 100.0 else ""
    paper = spec["paper"].get(metric, {})
    paper_cols = [c for c in cols if any(c in paper.get("/".join(row), {}) for row in rows)]
    head = list(headers)
    for c in cols:
        head += [c, f"{c} IQM [95% CI]"] if spec["rl"] else [c]
    head += [f"paper {c}" for c in paper_cols]
    lines = [f"## {metric}{unit}{arrow}", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(headers) + "---:|" * (len(head) - len(headers)))
    for row in rows:
        best = best_of({c: cells[row, c].mean for c in cols}, higher)
        out = list(row)
        for c in cols:
            out.append(bold(cells[row, c].mean_text(scale), c in best))
            if spec["rl"]:
                out.append(cells[row, c].iqm_text(scale))
        out += [
            # a null paper number (NOT FOUND in the paper) prints as "—" too
            fmt(paper["/".join(row)][c], scale) if paper.get("/".join(row), {}).get(c) is not None else "—"
            for c in paper_cols
        ]
        lines.append("| " + " | ".join(out) + " |")
    if spec["rl"]:
        lines.append(iqm_over_rows(cells, rows, cols, len(headers), len(paper_cols), higher, scale))
    return lines


def iqm_over_rows(
    cells: dict[tuple[tuple[str, ...], str], Cell],
    rows: list[tuple[str, ...]],
    cols: list[str],
    n_headers: int,
    n_paper: int,
    higher: bool | None,
    scale: float = 1.0,
) -> str:
    """IQM over all rows and seeds per column, with a bootstrap CI that resamples seeds within each row."""
    scores, texts = {}, {}
    for c in cols:
        strata = [cells[row, c].values for row in rows if cells[row, c].n]
        if not strata:
            scores[c], texts[c] = math.nan, "—"
            continue
        scores[c] = float(iqm(np.concatenate(strata)))
        lo, hi = bootstrap_ci(strata)
        texts[c] = f"{fmt(scores[c], scale)} [{fmt(lo, scale)}, {fmt(hi, scale)}]"
        if len(strata) < len(rows):  # a row without results: the aggregate is not comparable
            texts[c] += f" ({len(strata)}/{len(rows)} rows)"
    best = best_of(scores, higher)
    out = ["IQM over rows"] + [""] * (n_headers - 1)
    for c in cols:
        out += ["—", bold(texts[c], c in best)]
    out += ["—"] * n_paper
    return "| " + " | ".join(out) + " |"


def runs_section(jobs: list[Job]) -> list[str]:
    """Every job that gave no numbers, with the overrides to rerun it and its error's message."""
    bad = [j for j in jobs if not j.done]
    if not bad:
        return ["## Runs", "", f"All {len(jobs)} runs completed."]
    lines = ["## Runs", "", f"{len(jobs) - len(bad)}/{len(jobs)} completed. Not completed:", ""]
    for job in bad:
        overrides = (job.record or {}).get("overrides") or [f"{k}={v}" for k, v in job.overrides.items()]
        what = {"missing": "no results.json", "running": "still running, or killed without a final write"}
        why = what.get(job.status, job.status)
        lines.append(f"- `{' '.join(overrides)}` — {why}{failure_reason(job.record or {})}")
    return lines


def failure_reason(record: dict[str, Any]) -> str:
    """The reason a run failed, as ``": <message>"`` on one line: the error's own message (records from
    before ``error_message`` existed: the last line of the traceback); "" for a run without an error."""
    message = record.get("error_message")
    if message:
        return ": " + " ".join(ln.strip() for ln in str(message).splitlines() if ln.strip())
    error = [ln.strip() for ln in (record.get("error") or "").splitlines() if ln.strip()]
    return f": {error[-1]}" if error else ""


def write_csv(
    path: Path,
    cells: dict[tuple[tuple[str, ...], str, str], Cell],
    headers: list[str],
    spec: dict[str, Any],
) -> None:
    """One line per (row, column, metric), full precision, empty where there is no number."""

    def num(x: float | None) -> str:
        return "" if x is None or math.isnan(x) else repr(float(x))

    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([*headers, spec["columns"], "metric", *CSV_STATS])
        for (row, col, metric), cell in cells.items():
            paper = spec["paper"].get(metric, {}).get("/".join(row), {}).get(col)
            stats = [cell.mean, cell.std, cell.iqm, *cell.ci]
            w.writerow([*row, col, metric, cell.n, cell.expected, *map(num, stats), num(paper)])


def plot_curves(
    path: Path,
    jobs_by_cell: dict[tuple[tuple[str, ...], str], list[Job]],
    rows: list[tuple[str, ...]],
    cols: list[str],
    curve: str,
    scale: float = 1.0,
) -> bool:
    """One subplot per row, one line per column: mean over seeds ± std (times ``scale``: 100 for percent).

    Seeds are aligned on the steps common to all of them (no interpolation, so no invented points); a
    seed that logged an extra evaluation only loses that step. Returns False when there is nothing to plot.
    """
    series = {}
    for key, jobs in jobs_by_cell.items():
        runs = [
            dict((s, v) for s, v in j.record["curves"][curve])
            for j in jobs
            if j.done and (j.record.get("curves") or {}).get(curve)
        ]
        steps = sorted(set.intersection(*(set(r) for r in runs))) if runs else []
        if steps:
            y = scale * np.array([[r[s] for s in steps] for r in runs], dtype=float)
            std = y.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(steps))
            series[key] = (np.array(steps, dtype=float), y.mean(axis=0), std, len(runs))
    plotted = [row for row in rows if any((row, c) in series for c in cols)]
    if not plotted:
        return False

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(3, len(plotted))
    nrows = math.ceil(len(plotted) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.2 * nrows), squeeze=False)
    for ax, row in zip(axes.flat, plotted, strict=False):
        for i, c in enumerate(cols):
            if (row, c) in series:
                steps, mean, std, n = series[row, c]
                ax.plot(steps, mean, color=f"C{i}", label=f"{c} (n={n})")
                ax.fill_between(steps, mean - std, mean + std, color=f"C{i}", alpha=0.2, linewidth=0)
        ax.set_title(" / ".join(row))
        ax.set_xlabel("step")
        ax.set_ylabel(f"{curve} (%)" if scale == 100.0 else curve)
        ax.legend(fontsize="small")
    for ax in axes.flat[len(plotted) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return True


def plot_metric_by_row(
    path: Path,
    cells: dict[tuple[tuple[str, ...], str, str], Cell],
    rows: list[tuple[str, ...]],
    cols: list[str],
    metric: str,
    xlabel: str,
) -> bool:
    """``metric`` (mean ± std over seeds) against the row label, one line per column."""
    try:
        xs = {row: float(row[0]) for row in rows}
    except ValueError:
        xs = {row: float(i) for i, row in enumerate(rows)}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    plotted = False
    for i, col in enumerate(cols):
        points = sorted((xs[row], cells[row, col, metric]) for row in rows if cells[row, col, metric].n)
        if not points:
            continue
        x = np.array([p for p, _ in points])
        mean = np.array([c.mean for _, c in points])
        std = np.nan_to_num(np.array([c.std for _, c in points]))
        ax.plot(x, mean, marker="o", color=f"C{i}", label=col)
        ax.fill_between(x, mean - std, mean + std, color=f"C{i}", alpha=0.2, linewidth=0)
        plotted = True
    if not plotted:
        plt.close(fig)
        return False
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return True


def find_jobs(sweep: Path, records: list[dict[str, Any]]) -> tuple[list[Job], list[str], dict | None]:
    """The sweep's jobs, its swept keys and multirun.yaml (None when the sweep dir has none)."""
    path = sweep / "multirun.yaml"
    if path.is_file():
        loaded = OmegaConf.load(path)
        multirun = OmegaConf.to_container(loaded, resolve=False)
        params = OmegaConf.select(loaded, "hydra.sweeper.params")
        if params is not None:  # an experiment may pick its grid by interpolation (erc_dmc: by scale.name)
            with contextlib.suppress(OmegaConfBaseException):  # a resolver only Hydra knows: keep as typed
                multirun["hydra"]["sweeper"]["params"] = OmegaConf.to_container(params, resolve=True)
        swept = swept_params(multirun)
        return expected_jobs(records, swept), list(swept), multirun
    # No grid to check against: the records are the jobs, and the keys whose values vary were swept.
    seen: dict[str, set[str]] = {}
    for r in records:
        for k, v in override_dict(r.get("overrides") or []).items():
            seen.setdefault(k, set()).add(v)
    return expected_jobs(records, None), [k for k, vs in seen.items() if len(vs) > 1], None


def group_jobs(
    jobs: list[Job], spec: dict[str, Any], records: list[dict[str, Any]]
) -> tuple[list[tuple[str, ...]], list[str], dict[tuple[tuple[str, ...], str], list[Job]]]:
    """Row labels, column labels (both in sweep order, as typed on the command line) and each cell's jobs."""
    common = {}  # a field a job without a record cannot read from its overrides: the value all records share
    for name in [*spec["rows"], spec["columns"]]:
        values = {str(field_value(r, name)) for r in records}
        if len(values) == 1:
            common[name] = values.pop()
    labelled = [
        (
            tuple(job_label(job, f, common) for f in spec["rows"]) or ("all",),
            job_label(job, spec["columns"], common),
            job,
        )
        for job in jobs
    ]
    rows = list(dict.fromkeys(row for row, _, _ in labelled))
    cols = list(dict.fromkeys(col for _, col, _ in labelled))
    by_cell: dict[tuple[tuple[str, ...], str], list[Job]] = {(row, col): [] for row in rows for col in cols}
    for row, col, job in labelled:
        by_cell[row, col].append(job)
    return rows, cols, by_cell


def make_report(sweep: Path, out: Path | None = None, experiment: Path | None = None) -> str:
    """Write table.md, table.csv and curves.png for ``sweep`` into ``out`` (default: the sweep dir).

    ``experiment``: take the `report` spec from this experiment file instead of the one the runs
    stored, so a table's presentation can change without re-running its sweep."""
    records = load_records(sweep) if sweep.is_dir() else []
    if not records and not (sweep / "multirun.yaml").is_file():
        raise NoResultsError(f"no {RESULTS_FILE} and no multirun.yaml under {sweep}")
    jobs, swept_keys, multirun = find_jobs(sweep, records)
    given = None
    if experiment is not None:
        from omegaconf import OmegaConf

        given = OmegaConf.to_container(OmegaConf.load(experiment)).get("report")
        if given is None:
            raise NoResultsError(f"{experiment} has no `report:` node")
    spec = report_spec(records, multirun, swept_keys, f"Sweep {sweep.resolve().name}", given)
    rows, cols, jobs_by_cell = group_jobs(jobs, spec, records)
    cells = {}
    for metric in spec["metrics"]:
        for (row, col), cell_jobs in jobs_by_cell.items():
            done = [j.record["metrics"] for j in cell_jobs if j.done and j.record.get("metrics")]
            values = np.array([m[metric] for m in done if metric in m], dtype=float)
            cells[row, col, metric] = Cell(values, expected=len(cell_jobs))

    out = Path(out or sweep)
    out.mkdir(parents=True, exist_ok=True)
    scales = list(dict.fromkeys(str(r.get("scale")) for r in records))
    scales = scales or [str(field_value(multirun or {}, "scale"))]
    headers = spec["rows"] or ["rows"]
    done = sum(j.done for j in jobs)
    lines = [
        f"# {spec['title']}",
        "",
        f"Sweep `{sweep}` · scale: {', '.join(scales)} · {done}/{len(jobs)} runs completed",
        "",
    ]
    for metric in spec["metrics"]:
        by_metric = {(row, col): cells[row, col, metric] for row, col in jobs_by_cell}
        if done and not any(cell.n for cell in by_metric.values()):
            continue  # a metric no completed run reports (another scale's): no section of "missing"
        lines += [*metric_table(metric, by_metric, rows, cols, headers, spec), ""]
    lines += [*runs_section(jobs), ""]
    curve = spec["curve"]
    if curve and plot_curves(out / "curves.png", jobs_by_cell, rows, cols, curve, metric_scale(spec, curve)):
        lines += ["![learning curves](curves.png)", ""]
    metric = spec.get("plot_metric")
    # a plot_metric the runs do not report (another scale's) draws nothing
    plotted = metric in spec["metrics"]
    if plotted and plot_metric_by_row(out / f"{metric}.png", cells, rows, cols, metric, headers[0]):
        lines += [f"![{metric} by {headers[0]}]({metric}.png)", ""]
    if spec["paper_source"]:
        lines += [f"Paper numbers: {spec['paper_source']}", ""]
    text = "\n".join(lines)
    (out / "table.md").write_text(text)
    write_csv(out / "table.csv", cells, headers, spec)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep", type=Path, help="a Hydra multirun dir (holds multirun.yaml and one dir per job)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the files (default: the sweep dir)"
    )
    parser.add_argument(
        "--experiment",
        type=Path,
        default=None,
        help="take the report spec from this experiment file (default: the one stored with the runs)",
    )
    args = parser.parse_args(argv)
    try:
        text = make_report(args.sweep, args.out, args.experiment)
    except NoResultsError as ex:
        print(f"report: {ex}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
