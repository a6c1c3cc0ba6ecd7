"""The private parts of Lightning (and of its MLflow logger) this package relies on, pinned: a release that
renames or drops one fails here, by name, instead of breaking kill/resume tracking, checkpoints or the
throughput figures silently. Each entry says where it is used and why no public API serves."""

from __future__ import annotations

import inspect

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint, ThroughputMonitor
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.strategies import ModelParallelStrategy


def test_throughput_monitor_internals():
    """callbacks.Throughput: MFU against our dense peak (Lightning's table lacks the H200) must reach the
    per-stage meters Lightning keeps, and the precision's compute dtype is read the way Lightning reads it."""
    from lightning.pytorch.callbacks.throughput_monitor import _plugin_to_compute_dtype

    assert callable(_plugin_to_compute_dtype)
    from lightning.pytorch.trainer.states import RunningStage

    monitor = ThroughputMonitor(batch_size_fn=len)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.state.stage = RunningStage.TRAINING  # as during `fit`
    monitor.setup(trainer, L.LightningModule(), "fit")
    assert isinstance(monitor._throughputs, dict) and monitor._throughputs
    assert all(
        hasattr(meter, "available_flops") and hasattr(meter, "compute") for meter in monitor._throughputs.values()
    )


def test_model_checkpoint_internals():
    """callbacks.Checkpoint: `last.ckpt` written at the end of training between periodic saves, through
    Lightning's own routine (its naming and linking) rather than a copy of it."""
    checkpoint = ModelCheckpoint(save_last=True)
    assert hasattr(checkpoint, "_last_global_step_saved")
    assert list(inspect.signature(checkpoint._save_last_checkpoint).parameters) == ["trainer", "monitor_candidates"]
    assert list(inspect.signature(checkpoint._monitor_candidates).parameters) == ["trainer"]


def test_mlflow_logger_internals(tmp_path):
    """tracking.MLflowTracker: a killed run continued in the same MLflow run (`_run_id` set before first
    use), and a fall-back store when the server is unreachable (`_mlflow_client`, `_experiment_id` reset
    before `_initialized` is set)."""
    logger = MLFlowLogger(experiment_name="pins", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("_initialized", "_run_id", "_experiment_id", "_tracking_uri"):
        assert hasattr(logger, name), name
    assert logger._initialized is False and logger._run_id is None
    logger.experiment  # noqa: B018 - creates the client and the run
    assert logger._initialized is True and logger._run_id == logger.run_id
    assert logger._mlflow_client is logger.experiment


def test_strategy_and_cli_internals():
    """strategies.H2OVLFSDPStrategy sets the data-parallel size its mesh is built from (hybrid sharding);
    training.cli.H2OVLCLI checks `--ckpt_path` before LightningCLI reads hyperparameters out of it."""
    assert "_data_parallel_size" in inspect.getsource(ModelParallelStrategy)
    assert "self._parse_ckpt_path()" in inspect.getsource(LightningCLI)  # called while parsing


@pytest.mark.parametrize("attribute", ["_trainer"])
def test_lightning_module_internals(attribute):
    """module.H2OVLModule.configure_model: `load_from_checkpoint` calls the hook without a trainer, and the
    public `trainer` property raises there."""
    assert getattr(L.LightningModule(), attribute) is None
