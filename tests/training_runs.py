"""Running `h2ovl fit` as a real subprocess, as users do, and reading what it left behind."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from h2ovl.data.batching import Batching

ROOT = Path(__file__).resolve().parents[1]


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def tiny_run_config(tmp: Path, name: str, max_steps: int, **data: Any) -> dict[str, Any]:
    """The CPU experiment, shrunk: small synthetic data, no validation, a checkpoint every 4 steps. `data`
    overrides the data module's settings, its `batching` group's fields among them by name."""
    batching = {name: data.pop(name) for name in [f.name for f in dataclasses.fields(Batching)] if name in data}
    return {
        "extends": [str(ROOT / "experiments/cpu/tiny.yaml")],
        "data": {
            "synthetic": {"out": str(tmp / "synthetic"), "n": 40, "max_side": 256},
            "batching": {"batch_size": 2, "max_length": 512, **batching},
            **data,
        },
        "trainer": {
            "max_steps": max_steps,
            "limit_val_batches": 0,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(tmp / "runs" / name),
            "logger": {
                "init_args": {
                    "experiment_name": name,
                    "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
                    "log_model": False,
                }
            },
        },
        "checkpoint": {"every_n_train_steps": 4},
        "throughput": {"window_size": 2},
    }


def h2ovl_fit(config: Path, *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-m", "h2ovl.cli", "fit", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=config.parent,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"h2ovl fit failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def last_checkpoint(tmp: Path, name: str) -> dict[str, Any]:
    return torch.load(tmp / "runs" / name / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)


def mlflow_runs(tmp: Path, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def metric_history(tmp: Path, run_id: str, key: str) -> dict[int, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}
