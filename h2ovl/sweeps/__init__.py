"""Sweeps and ablations: YAML specs (`spec.py`) expanded to trials, each its own `h2ovl fit` process
(`trials.py`), launched locally or on SLURM under one MLflow parent run (`runner.py`, `slurm.py`, `search.py`
for Optuna), and tables/plots rebuilt from MLflow (`results.py`, `plots.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from h2ovl.sweeps.results import Table, experiment_table, sweep_table, to_markdown, write_table
from h2ovl.sweeps.runner import Sweep, SweepOptions, tracking_uri
from h2ovl.sweeps.spec import SpecError, SweepSpec, load_spec

__all__ = ["SpecError", "Sweep", "SweepOptions", "SweepSpec", "load_spec", "report", "table_for"]


def table_for(uri: str | None, sweep_id: str | None = None, experiment: str | None = None,
              metrics: list[str] | None = None, baseline: str | None = None) -> tuple[Any, Table]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(uri))
    if sweep_id:
        table = sweep_table(client, sweep_id, metrics)
        if baseline:
            table.baseline = baseline
        return client, table
    if not metrics:
        raise ValueError("--experiment needs --metric (which metrics to tabulate)")
    return client, experiment_table(client, experiment, metrics, baseline)


def report(client: Any, table: Table, out: Path) -> dict[str, Any]:
    """Table files and plots under `out`, and as artifacts (`results/`) of the sweep's parent run."""
    from h2ovl.sweeps.plots import write_plots

    files = {**write_table(table, out), **write_plots(client, table, out)}
    if table.parent_run_id:
        for path in files.values():
            client.log_artifact(table.parent_run_id, str(path), artifact_path="results")
    return {"table": to_markdown(table), **{k: str(v) for k, v in files.items()}}
