"""Faults at scale, named: a NaN or infinite loss stops the run naming the step and its samples with the last
good checkpoint kept (or, under `model.optim.nonfinite_loss: skip`, drops that update and counts it); running
out of accelerator memory ends in one line naming the settings that decide a step's memory; a rank that
dies, or stops answering, stops every other rank within the collective timeout, in one line."""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import pytest
import torch

from h2ovl.cli import main

from training_runs import ROOT, h2ovl_fit, last_checkpoint, metric_history, mlflow_runs, tiny_run_config, write_config


def _error_line(capsys) -> str:
    """The command's own error: exactly one line, no traceback (logging may print other lines)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("h2ovl fit:")]
    return line


def _run(tmp_path: Path, name: str, steps: int, fault: dict, **model) -> tuple[int, str]:
    config = tiny_run_config(tmp_path, name, steps)
    config["checkpoint"] = {"every_n_train_steps": 2}
    config["trainer"]["callbacks"] = [fault]
    if model:
        config["model"] = {"optim": model}
    return main(["fit", "--config", str(write_config(tmp_path / f"{name}.yaml", config))])


def test_a_nonfinite_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    fault = {"class_path": "support.faults.NonFiniteLossAt", "init_args": {"step": 5, "forever": True}}
    assert _run(tmp_path, "diverged", 8, fault) == 2
    assert _error_line(capsys).startswith("h2ovl fit: error: the loss of optimizer step 5 is nan (samples ")
    checkpoint = last_checkpoint(tmp_path, "diverged")
    assert checkpoint["global_step"] == 4  # the last good one, not overwritten
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_skip_drops_a_nonfinite_steps_update_and_counts_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fault = {"class_path": "support.faults.NonFiniteLossAt", "init_args": {"step": 3}}
    assert _run(tmp_path, "skipped", 6, fault, nonfinite_loss="skip") == 0
    checkpoint = last_checkpoint(tmp_path, "skipped")
    assert checkpoint["global_step"] == 6
    # one full-state write per save: last.ckpt alone (no step file holding the same state again)
    assert sorted(p.name for p in (tmp_path / "runs/skipped/checkpoints").iterdir()) == ["last.ckpt"]
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    (run,) = mlflow_runs(tmp_path, "skipped")
    losses = metric_history(tmp_path, run.info.run_id, "train/loss")
    assert math.isnan(losses[2]) and all(math.isfinite(losses[s]) for s in (0, 1, 3, 4, 5))
    assert metric_history(tmp_path, run.info.run_id, "train/skipped_nonfinite") == {
        0: 0.0,
        1: 0.0,
        2: 1.0,
        3: 1.0,
        4: 1.0,
        5: 1.0,
    }


def test_running_out_of_memory_names_the_settings_that_decide_a_step(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _run(tmp_path, "oom", 4, {"class_path": "support.faults.OutOfMemoryAt", "init_args": {"step": 2}}) == 2
    line = _error_line(capsys)
    assert line.startswith("h2ovl fit: error: out of accelerator memory at optimizer step 2")
    for knob in ("data.batching.batch_size=2", "max_tiles=", "model.gradient_checkpointing=False"):
        assert knob in line


def test_nonfinite_loss_accepts_only_stop_or_skip():
    from h2ovl.errors import SettingError
    from h2ovl.training import H2OVLModule, Optimization

    with pytest.raises(SettingError, match="nonfinite_loss must be 'stop' or 'skip'"):
        H2OVLModule(optim=Optimization(nonfinite_loss="ignore"))


@pytest.mark.slow  # two-process runs
@pytest.mark.parametrize(
    ("fault", "timeout"), [("SigkillRankAt", None), ("HangRankAt", "0:01:00")], ids=["killed", "silent"]
)
def test_a_lost_rank_stops_every_rank_in_one_line_within_the_timeout(tmp_path: Path, fault: str, timeout: str | None):
    """Two DDP processes over gloo; at step 2 rank one is SIGKILLed (rank zero notices at once) or stops
    answering (rank zero's next collective times out). Rank zero ends in one line with exit code 1, and kills
    the silent rank it launched: no process of the run is left (the test would wait for its open stderr)."""
    config = tiny_run_config(tmp_path, "lost", 20, global_batch_size=4)
    config["extends"].append({"trainer": str(ROOT / "configs/trainer/ddp-cpu.yaml")})
    args = [
        f"--trainer.callbacks+=support.faults.{fault}",
        "--trainer.callbacks.rank",
        "1",
        "--trainer.callbacks.step",
        "2",
    ]
    if timeout:  # it bounds the start's rendezvous too: a minute, so a loaded machine's slow start passes
        args += ["--trainer.strategy.init_args.timeout", timeout]
    started = time.monotonic()
    result = h2ovl_fit(write_config(tmp_path / "lost.yaml", config), *args, check=False, timeout=240)
    assert result.returncode == 1 and time.monotonic() - started < 200
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("h2ovl fit:")]
    assert (
        line.startswith("h2ovl fit: rank 0 lost contact with another process of the run") and "--ckpt_path last" in line
    )
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "lost.yaml")], capture_output=True, text=True).stdout.split()
    assert not left
