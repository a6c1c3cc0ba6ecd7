"""The prepared GPU check (`benchmarks/gpu/run.sh`) in its `--tiny` CPU form, through the same script a
device call runs: the throughput rows, then a paper recipe through `h2ovl fit` tracked in MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training_runs import ROOT


@pytest.mark.slow  # two training processes
def test_the_prepared_gpu_script_runs_in_its_tiny_form(tmp_path: Path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks/gpu/run.sh"), "--tiny"], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((tmp_path / "train_gpu.json").read_text())["rows"]
    assert rows and all(row.get("error") is None for row in rows)
    (fit,) = [json.loads(line)["fit_smoke"] for line in result.stdout.splitlines() if line.startswith('{"fit_smoke"')]
    assert fit["exit_code"] == 0 and fit["run_status"] == "FINISHED" and fit["train/loss"] > 0
