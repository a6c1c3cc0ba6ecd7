"""Faults: a run killed with SIGKILL resumes from `last` and ends where an uninterrupted run ends (steps,
weights, MLflow run); checkpoint files are atomic; an unreachable tracking server does not stop training."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from h2ovl.training import checkpoint_io
from h2ovl.training.checkpoint_io import AtomicCheckpointIO

from training_runs import h2ovl_fit, last_checkpoint, metric_history, mlflow_runs, tiny_run_config, write_config


@pytest.mark.slow  # whole sweeps / killed runs as subprocesses: `make test-all` and CI
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path: Path):
    steps = 12
    straight = write_config(tmp_path / "straight.yaml", tiny_run_config(tmp_path, "straight", steps))
    h2ovl_fit(straight)

    killed = tiny_run_config(tmp_path, "killed", steps)
    killed["trainer"]["callbacks"] = [{"class_path": "support.faults.SigkillAt", "init_args": {"step": 6}}]
    result = h2ovl_fit(write_config(tmp_path / "killed.yaml", killed), check=False)
    assert result.returncode == -9, result.stderr[-2000:]  # died by SIGKILL after step 6
    assert last_checkpoint(tmp_path, "killed")["global_step"] == 4  # the last checkpoint before the kill
    (run_before,) = mlflow_runs(tmp_path, "killed")

    resumed = tiny_run_config(tmp_path, "killed", steps)  # same run directory, no fault
    h2ovl_fit(write_config(tmp_path / "resumed.yaml", resumed), "--ckpt_path", "last")

    a, b = last_checkpoint(tmp_path, "straight"), last_checkpoint(tmp_path, "killed")
    assert a["global_step"] == b["global_step"] == steps
    for name, weight in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], weight, atol=1e-5, rtol=1e-4, msg=name)
    (run_after,) = mlflow_runs(tmp_path, "killed")  # the same run, continued, now finished
    assert run_after.info.run_id == run_before.info.run_id == b["mlflow_run_id"]
    assert run_after.info.status == "FINISHED"
    assert_each_step_logged_once(tmp_path, run_after.info.run_id, steps)  # steps 4 and 5 ran twice
    losses = metric_history(tmp_path, run_after.info.run_id, "train/loss")
    straight_losses = metric_history(tmp_path, mlflow_runs(tmp_path, "straight")[0].info.run_id, "train/loss")
    assert losses[steps - 1] == pytest.approx(straight_losses[steps - 1], abs=1e-4)


def assert_each_step_logged_once(tmp: Path, run_id: str, steps: int) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    for key in ("train/loss", "train/lr", "train/pad_fraction"):
        logged = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert logged == list(range(steps)), (key, logged)


@pytest.mark.slow
def test_a_kill_between_a_checkpoint_and_its_step_logging_loses_no_metric(tmp_path: Path):
    """Lightning writes a step's checkpoint before it logs that step: a kill in between must not leave a
    hole in the curves once the run is resumed (the checkpoint carries the step's metrics)."""
    steps = 8
    killed = tiny_run_config(tmp_path, "gap", steps)
    killed["trainer"]["callbacks"] = [{"class_path": "support.faults.SigkillAfterSaving", "init_args": {"step": 5}}]
    assert h2ovl_fit(write_config(tmp_path / "gap.yaml", killed), check=False).returncode == -9
    assert last_checkpoint(tmp_path, "gap")["global_step"] == 5
    (run,) = mlflow_runs(tmp_path, "gap")
    assert 4 not in metric_history(
        tmp_path, run.info.run_id, "train/loss"
    )  # step 5 (logged at 4) never reached the store
    h2ovl_fit(
        write_config(tmp_path / "gap-resumed.yaml", tiny_run_config(tmp_path, "gap", steps)), "--ckpt_path", "last"
    )
    (run,) = mlflow_runs(tmp_path, "gap")
    assert run.info.status == "FINISHED"
    assert_each_step_logged_once(tmp_path, run.info.run_id, steps)


@pytest.mark.slow
def test_sigterm_stops_a_fit_with_exit_143_and_a_killed_run(tmp_path: Path):
    config = tiny_run_config(tmp_path, "term", 20)
    config["trainer"]["callbacks"] = [{"class_path": "support.faults.SigtermAt", "init_args": {"step": 2}}]
    result = h2ovl_fit(write_config(tmp_path / "term.yaml", config), check=False)
    assert result.returncode == 143, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "h2ovl fit: stopped by SIGTERM; resume with --ckpt_path last"
    (run,) = mlflow_runs(tmp_path, "term")
    assert run.info.status == "KILLED"


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "ckpts/last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    assert torch.load(target, weights_only=False) == {"step": 1}

    def dies_halfway(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_io.torch, "save", dies_halfway)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=False) == {"step": 1}  # the good one is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # and no partial left behind


def test_unreachable_tracking_server_falls_back_and_training_finishes(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from h2ovl.training.compose import compose_to_yaml
    from h2ovl.training.lightning_cli import H2OVLCLI

    config = tiny_run_config(tmp_path, "offline", 3)
    config["trainer"]["logger"]["init_args"].update(
        tracking_uri="http://127.0.0.1:9", fallback_dir=str(tmp_path / "fallback")
    )
    path = write_config(tmp_path / "offline.yaml", config)
    with caplog.at_level(logging.WARNING):
        cli = H2OVLCLI(args=["fit", "--config", compose_to_yaml(path)])
    assert cli.trainer.global_step == 3
    assert "cannot be reached" in caplog.text and "fallback" in caplog.text
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'fallback/mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("offline").experiment_id])
    assert run.data.tags["h2ovl.fallback_from"] == "http://127.0.0.1:9"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 3
    assert run.info.status == "FINISHED"
