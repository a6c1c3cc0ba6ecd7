"""Ablation plots (matplotlib, PNG): the metric against visual tokens per sample (what accuracy costs), and
each variant's validation curve (mean over seeds, seeds shaded)."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any, TypeVar

from h2ovl.sweeps.results import Table

T = TypeVar("T")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _merge_coincident(items: list[tuple[Hashable, str, T]]) -> list[tuple[str, T]]:
    """(key, label, payload) in row order -> (label, payload) with one entry per key, its label "a = b"
    for variants that draw the same thing (MSAC equals dynamic resolution wherever its fine grid is empty),
    rather than marks and labels drawn over each other."""
    merged: dict[Hashable, tuple[list[str], T]] = {}
    for key, label, payload in items:
        merged.setdefault(key, ([], payload))[0].append(label)
    return [(" = ".join(labels), payload) for labels, payload in merged.values()]


def _as_tabulated(value: float) -> float:
    """`value` to the table's 4 significant digits: what counts as equal when merging."""
    return float(f"{value:.4g}")


def cost_points(table: Table, metric: str) -> list[tuple[float, float, float, str]]:
    """(visual tokens, mean, std, label) per point of the cost plot."""
    items = []
    for row in table.rows:
        mean = row.mean(metric)
        if mean is None or row.visual_tokens is None:
            continue
        point = (row.visual_tokens, mean, row.std(metric) or 0.0)
        items.append((tuple(_as_tabulated(v) for v in point), row.variant, point))
    return [(*point, label) for label, point in _merge_coincident(items)]


def cost_plot(table: Table, metric: str, path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for x, y, err, label in cost_points(table, metric):
        axes.errorbar(x, y, yerr=err, fmt="o", capsize=4, label=label)
        axes.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("visual tokens per sample")
    axes.set_ylabel(metric)
    axes.set_title(f"{table.title}: {metric} against cost")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def validation_curves(client: Any, table: Table, metric: str) -> list[tuple[str, list[int], list[list[float]]]]:
    """(label, steps, the seeds' values at each step) per curve, each variant's runs from MLflow."""
    items = []
    for row in table.rows:
        histories = [{m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)} for run in row.runs]
        steps = sorted(set().union(*histories)) if histories else []
        if not steps:
            continue
        per_step = [[h[s] for h in histories if s in h] for s in steps]
        key = tuple((s, tuple(_as_tabulated(v) for v in values)) for s, values in zip(steps, per_step))
        items.append((key, row.variant, (steps, per_step)))
    return [(label, steps, per_step) for label, (steps, per_step) in _merge_coincident(items)]


def curves_plot(client: Any, table: Table, metric: str, path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for label, steps, per_step in validation_curves(client, table, metric):
        means = [sum(v) / len(v) for v in per_step]
        (line,) = axes.plot(steps, means, marker=".", label=label)
        axes.fill_between(
            steps, [min(v) for v in per_step], [max(v) for v in per_step], color=line.get_color(), alpha=0.15
        )
    axes.set_xlabel("step")
    axes.set_ylabel(metric)
    axes.set_title(f"{table.title}: validation {metric}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_plots(client: Any, table: Table, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    metric = table.metrics[0]
    return {
        "cost": cost_plot(table, metric, out / "cost_vs_metric.png"),
        "curves": curves_plot(client, table, metric, out / "validation_curves.png"),
    }
