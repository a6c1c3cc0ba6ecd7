"""Sweeps and ablations: YAML specs (`spec.py`) expanded to trials, each its own `h2ovl fit` process
(`trials.py`), launched locally or on SLURM under one MLflow parent run (`runner.py`, `slurm.py`, `search.py`
for Optuna), and tables/plots rebuilt from MLflow (`results.py`, `plots.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from h2ovl.errors import SettingError
from h2ovl.sweeps.claims import claims_text
from h2ovl.sweeps.results import Table, experiment_table, sweep_table, to_markdown, write_table
from h2ovl.sweeps.runner import Sweep, SweepOptions, tracking_uri
from h2ovl.sweeps.spec import SpecError, SweepSpec, load_spec

__all__ = ["SpecError", "Sweep", "SweepOptions", "SweepSpec", "load_spec", "table_for", "write_results"]


def table_for(
    uri: str | None,
    sweep_id: str | None = None,
    experiment: str | None = None,
    metrics: list[str] | None = None,
    baseline: str | None = None,
) -> tuple[Any, Table]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(uri))
    if sweep_id:
        table = sweep_table(client, sweep_id, metrics)
        if baseline:
            table.baseline = baseline
        return client, table
    if not metrics:
        raise SettingError("--experiment needs --metric (which metrics to tabulate)")
    return client, experiment_table(client, experiment, metrics, baseline)


def write_results(client: Any, table: Table, out: Path, sweep: Sweep | None = None) -> dict[str, Any]:
    """Table files and plots under `out`, and as artifacts (`results/`) of the sweep's parent run. Given the
    `sweep` that made the table: its claims judged (`claims.md`, printed with the table) and its gallery of
    held-out answers (`gallery.png`, when its trials' checkpoints are on this machine)."""
    from h2ovl.sweeps.plots import write_plots

    if sweep is not None and sweep.spec.init_stages:
        table.spread += (
            f" The seeds share one run of the init stages (seed {sweep.spec.stage_seed}): how far another run "
            "of those stages (another seed, another machine's kernels) moves a variant is not in it."
        )
    files = {**write_table(table, out), **write_plots(client, table, out)}
    text = to_markdown(table)
    if sweep is not None and sweep.spec.claims:
        verdicts = claims_text(table, sweep.spec.claims, sweep.spec.metric)
        files["claims"] = out / "claims.md"
        files["claims"].write_text(verdicts + "\n")
        text += "\n\n" + verdicts
    inputs = sweep.gallery_checkpoints() if sweep is not None else None
    if inputs is not None:
        from h2ovl.sweeps.gallery import write_gallery

        checkpoints, data = inputs
        files["gallery"] = write_gallery(
            checkpoints,
            data,
            out / "gallery.png",
            title=f"{sweep.sweep_id}: answers of each variant's seed-{sweep.spec.seeds[0]} trial to held-out samples",
        )
    if table.parent_run_id:
        for path in files.values():
            client.log_artifact(table.parent_run_id, str(path), artifact_path="results")
    return {"table": text, **{k: str(v) for k, v in files.items()}}
