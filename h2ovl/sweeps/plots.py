"""Ablation plots (matplotlib, PNG): the metric against visual tokens per sample (what accuracy costs), and
each variant's validation curve (mean over seeds, seeds shaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from h2ovl.sweeps.results import Table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def cost_plot(table: Table, metric: str, path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for row in table.rows:
        mean = row.mean(metric)
        if mean is None or row.visual_tokens is None:
            continue
        axes.errorbar(row.visual_tokens, mean, yerr=row.std(metric) or 0.0, fmt="o", capsize=4, label=row.variant)
        axes.annotate(row.variant, (row.visual_tokens, mean), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("visual tokens per sample")
    axes.set_ylabel(metric)
    axes.set_title(f"{table.title}: {metric} against cost")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def curves_plot(client: Any, table: Table, metric: str, path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for row in table.rows:
        histories = [{m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)} for run in row.runs]
        steps = sorted(set().union(*histories)) if histories else []
        if not steps:
            continue
        per_step = [[h[s] for h in histories if s in h] for s in steps]
        means = [sum(v) / len(v) for v in per_step]
        line, = axes.plot(steps, means, marker=".", label=row.variant)
        axes.fill_between(steps, [min(v) for v in per_step], [max(v) for v in per_step], color=line.get_color(), alpha=0.15)
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
    return {"cost": cost_plot(table, metric, out / "cost_vs_metric.png"),
            "curves": curves_plot(client, table, metric, out / "validation_curves.png")}
