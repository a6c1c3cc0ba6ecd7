"""`h2ovl table`: ablation tables rebuilt from the MLflow store alone (any machine that sees the store can
remake them), as Markdown, CSV and LaTeX, plus the plots, logged back to the sweep's parent run.

One row per variant (a run's `variant` tag: the configuration without its seed); per metric the mean ±
sample std over the variant's finished seeds and the difference of means against the baseline row; visual
tokens per sample (mean of `train/visual_tokens_per_sample`) and training samples/s (median of the
throughput monitor's `train/device/samples_per_sec`, or the global `train/samples_per_sec`).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from h2ovl.errors import SettingError

VISUAL_TOKENS = "train/visual_tokens_per_sample"
THROUGHPUT = ("train/samples_per_sec", "train/device/samples_per_sec")


@dataclass
class Row:
    variant: str
    runs: list[Any] = field(default_factory=list)
    failed: int = 0
    """Runs of this variant left out because they did not finish (failed, killed, or still running)."""
    values: dict[str, list[float]] = field(default_factory=dict)
    visual_tokens: float | None = None
    samples_per_s: float | None = None

    def mean(self, metric: str) -> float | None:
        values = self.values.get(metric) or []
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        values = self.values.get(metric) or []
        return statistics.stdev(values) if len(values) > 1 else None


@dataclass
class Table:
    title: str
    metrics: list[str]
    modes: dict[str, str]
    baseline: str | None
    rows: list[Row]
    parent_run_id: str | None = None
    experiment_id: str | None = None
    left_out: dict[str, int] = field(default_factory=dict)
    """Runs not in the numbers, by MLflow status (FAILED, KILLED, RUNNING)."""
    spread: str = "± is the sample standard deviation over each variant's finished seeds."
    """What the table's "±" is the spread of, printed under it."""

    def diff(self, row: Row, metric: str) -> float | None:
        base = next((r for r in self.rows if r.variant == self.baseline), None)
        if base is None or row is base:
            return None
        a, b = row.mean(metric), base.mean(metric)
        return None if a is None or b is None else a - b


def _history_mean(client: Any, run_id: str, key: str, median: bool = False) -> float | None:
    values = [m.value for m in client.get_metric_history(run_id, key)]
    if not values:
        return None
    return statistics.median(values) if median else statistics.fmean(values)


def _all_experiments(client: Any) -> list[str]:
    return [e.experiment_id for e in client.search_experiments()]


def filter_value(value: str) -> str:
    """`value` as a string literal of an MLflow search filter. The filter grammar has no escape character:
    a value is quoted with whichever quote it does not hold; one holding both cannot be searched for."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise SettingError(f"{value!r} holds both quote characters and cannot be used in an MLflow search")


def find_sweep(client: Any, sweep_id: str) -> tuple[Any, list[Any]]:
    """(the parent run, the trial runs) of a sweep, from the tracking store.

    The same spec run again into the same store (a new output folder, or after `make clean`) starts a new
    parent under the same sweep id: the newest parent is the sweep, and only its own children are its
    trials, so two runs' results never pool into one table.
    """
    experiments = _all_experiments(client)
    parents = client.search_runs(
        experiments,
        f"tags.sweep_id = {filter_value(sweep_id)} and tags.role = 'sweep'",
        order_by=["attributes.start_time DESC"],
    )
    if not parents:
        raise SettingError(f"no sweep {sweep_id!r} in the tracking store {client.tracking_uri}")
    parent = parents[0]
    trials = client.search_runs(
        [parent.info.experiment_id],
        f"tags.role = 'trial' and tags.`mlflow.parentRunId` = {filter_value(parent.info.run_id)}",
        max_results=5000,
    )
    return parent, trials


def _seed_then_start(run: Any) -> tuple[int, int]:
    seed = run.data.tags.get("seed", "")
    return (int(seed) if seed.lstrip("-").isdigit() else 0, run.info.start_time or 0)


def build_table(
    client: Any, runs: list[Any], metrics: list[str], modes: dict[str, str], baseline: str | None, title: str
) -> Table:
    rows: dict[str, Row] = {}
    left_out: dict[str, int] = {}
    for run in sorted(runs, key=_seed_then_start):  # a row's values read in seed order (claims print them so)
        variant = run.data.tags.get("variant") or run.data.tags.get("trial") or run.info.run_name
        row = rows.setdefault(variant, Row(variant))
        if run.info.status != "FINISHED":  # only finished runs make numbers; the rest are counted, by status
            row.failed += 1
            left_out[run.info.status] = left_out.get(run.info.status, 0) + 1
            continue
        row.runs.append(run)
        for metric in metrics:
            if metric in run.data.metrics:
                row.values.setdefault(metric, []).append(run.data.metrics[metric])
    for row in rows.values():
        tokens = [v for v in (_history_mean(client, r.info.run_id, VISUAL_TOKENS) for r in row.runs) if v is not None]
        row.visual_tokens = statistics.fmean(tokens) if tokens else None
        rates = []
        for run in row.runs:
            key = next((k for k in THROUGHPUT if k in run.data.metrics), None)
            if key:
                rates.append(_history_mean(client, run.info.run_id, key, median=True))
        row.samples_per_s = statistics.fmean(rates) if rates else None
    ordered = sorted(rows.values(), key=lambda r: (r.variant != baseline, r.variant))
    return Table(title=title, metrics=metrics, modes=modes, baseline=baseline, rows=ordered, left_out=left_out)


def sweep_table(client: Any, sweep_id: str, metrics: list[str] | None = None) -> Table:
    parent, trials = find_sweep(client, sweep_id)
    tags = parent.data.tags
    main = tags.get("sweep.metric")
    report = json.loads(tags.get("sweep.report") or "[]")
    chosen = metrics or [main, *[m for m in report if m != main]]
    modes = {main: tags.get("sweep.mode", "min")}
    table = build_table(client, trials, chosen, modes, tags.get("sweep.baseline") or None, f"sweep {sweep_id}")
    table.parent_run_id, table.experiment_id = parent.info.run_id, parent.info.experiment_id
    return table


def experiment_table(client: Any, experiment: str, metrics: list[str], baseline: str | None = None) -> Table:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SettingError(f"no experiment {experiment!r} in the tracking store {client.tracking_uri}")
    runs = [
        r for r in client.search_runs([found.experiment_id], max_results=5000) if r.data.tags.get("role") != "sweep"
    ]
    table = build_table(client, runs, metrics, {}, baseline, f"experiment {experiment}")
    table.experiment_id = found.experiment_id
    return table


# -- rendering --------------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _cells(table: Table, row: Row) -> list[str]:
    cells = [row.variant, f"{len(row.runs)}" + (f" (+{row.failed} unfinished, left out)" if row.failed else "")]
    for metric in table.metrics:
        mean, std = row.mean(metric), row.std(metric)
        cells.append("–" if mean is None else f"{mean:.4g} ± {_num(std, 2)}")
        diff = table.diff(row, metric)
        cells.append("baseline" if row.variant == table.baseline else "–" if diff is None else f"{diff:+.4g}")
    cells += [_num(row.visual_tokens, 4), _num(row.samples_per_s, 3)]
    return cells


def headers(table: Table) -> list[str]:
    out = ["variant", "seeds"]
    for metric in table.metrics:
        arrow = {"min": " ↓", "max": " ↑"}.get(table.modes.get(metric, ""), "")
        out += [f"{metric}{arrow}", f"Δ {metric}"]
    return out + ["visual tokens/sample", "samples/s"]


def to_markdown(table: Table) -> str:
    lines = ["| " + " | ".join(headers(table)) + " |", "|" + "---|" * len(headers(table))]
    lines += ["| " + " | ".join(_cells(table, row)) + " |" for row in table.rows]
    lines += ["", table.spread]
    if table.left_out:
        counts = ", ".join(f"{n} {status.lower()}" for status, n in sorted(table.left_out.items()))
        lines += ["", f"Finished runs only: {sum(table.left_out.values())} left out ({counts})."]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Plain numbers (mean, std, diff per metric) for further analysis."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = ["variant", "seeds", "failed"]
    for metric in table.metrics:
        columns += [f"{metric} mean", f"{metric} std", f"{metric} diff"]
    writer.writerow(columns + ["visual_tokens_per_sample", "samples_per_s"])
    for row in table.rows:
        values: list[Any] = [row.variant, len(row.runs), row.failed]
        for metric in table.metrics:
            values += [row.mean(metric), row.std(metric), table.diff(row, metric)]
        writer.writerow(["" if v is None else v for v in values + [row.visual_tokens, row.samples_per_s]])
    return buffer.getvalue()


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return (
        text.replace("±", r"$\pm$")
        .replace("Δ", r"$\Delta$")
        .replace("↓", r"$\downarrow$")
        .replace("↑", r"$\uparrow$")
        .replace("–", "--")
    )


def to_latex(table: Table) -> str:
    cols = headers(table)
    lines = [
        r"\begin{tabular}{l" + "r" * (len(cols) - 1) + "}",
        r"\toprule",
        " & ".join(_latex_escape(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_latex_escape(c) for c in _cells(table, row)) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_table(table: Table, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "table.md", "csv": out / "table.csv", "latex": out / "table.tex"}
    files["markdown"].write_text(f"{table.title}\n\n{to_markdown(table)}")
    files["csv"].write_text(to_csv(table))
    files["latex"].write_text(to_latex(table))
    return files
