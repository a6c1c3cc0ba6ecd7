"""MLflow bookkeeping (params, tags, config artifact, resumed-run params), the derived gradient
accumulation, the FSDP wrap policy, and the top-level `h2ovl fit` entry point."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from h2ovl.cli import main
from h2ovl.data.datamodule import accumulation_steps
from h2ovl.model.h2ovl import H2OVL
from h2ovl.training.strategies import H2OVLFSDPStrategy
from h2ovl.training.tracking import MAX_PARAM_CHARS, TRUNCATED, MLflowTracker, flatten

from training_runs import mlflow_runs, tiny_run_config, write_config


def test_flatten_truncates_long_values_visibly():
    flat = flatten(
        {
            "model": {"optim": {"lr": 1e-4}, "trainable": {"vision": True}},
            "data": {"tasks": ["a", "b"]},
            "long": "x" * 2000,
        }
    )
    assert (
        flat["model.optim.lr"] == "0.0001"
        and flat["model.trainable.vision"] == "True"
        and flat["data.tasks"] == '["a", "b"]'
    )
    assert len(flat["long"]) == MAX_PARAM_CHARS and flat["long"].endswith(TRUNCATED)


def test_resumed_run_keeps_params_and_tags_changed_values(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = MLflowTracker(experiment_name="e", tracking_uri=uri, stage="pretrain", sweep_id="s1")
    first.log_hyperparams({"model": {"optim": {"lr": 0.1}}, "ckpt_path": None})
    run_id = first.run_id
    again = MLflowTracker(experiment_name="e", tracking_uri=uri)
    again.continue_run(run_id)
    again.log_hyperparams(
        {"model": {"optim": {"lr": 0.1}}, "ckpt_path": "last", "new": 1}
    )  # MLflow refuses changed params
    run = again.experiment.get_run(run_id)
    assert run.data.params == {"model.optim.lr": "0.1", "ckpt_path": "None", "new": "1"}
    assert run.data.tags["resume.ckpt_path"] == "last"
    assert run.data.tags["stage"] == "pretrain" and run.data.tags["sweep_id"] == "s1"
    assert run.info.artifact_uri.startswith(
        (tmp_path / "mlruns").resolve().as_uri()
    )  # beside the store, not in ./mlruns


def test_tracking_uri_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)  # the default store is ./mlflow.db: never the one of the folder the suite runs in
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
    assert MLflowTracker().tracking_uri == f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert MLflowTracker().tracking_uri == "sqlite:///mlflow.db"


def test_global_batch_size_gives_accumulation():
    assert accumulation_steps(256, 4, 8) == 8
    assert accumulation_steps(256, 4, 64) == 1
    with pytest.raises(ValueError, match="not a multiple of data.batching.batch_size=3 x 8 devices"):
        accumulation_steps(256, 3, 8)
    with pytest.raises(ValueError, match="contradicts"):
        accumulation_steps(256, 4, 8, configured=2)


def test_fsdp_units_are_vit_blocks_and_decoder_layers():
    model, _ = H2OVL.from_preset("tiny-mistral")
    units = model.shard_units()
    assert {type(unit).__name__ for unit in units} == {"Block", "MistralDecoderLayer"}
    assert len(units) == len(model.vision.blocks) + len(model.llm.get_decoder().layers)
    strategy = H2OVLFSDPStrategy(param_dtype="bfloat16")
    assert (
        strategy.mixed_precision.param_dtype == torch.bfloat16
        and strategy.mixed_precision.reduce_dtype == torch.float32
    )
    with pytest.raises(ValueError, match="param_dtype must be one of"):
        H2OVLFSDPStrategy(param_dtype="bf16")


def test_h2ovl_fit_entry_point_logs_config_tags_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "run.yaml", tiny_run_config(tmp_path, "entry", 3))
    assert main(["fit", "--config", str(config), "--model.optim.lr", "0.001"]) == 0
    (run,) = mlflow_runs(tmp_path, "entry")
    assert run.data.params["model.optim.lr"] == "0.001" and run.data.params["data.batching.batch_size"] == "2"
    assert int(run.data.params["params/total/trainable"]) > 0
    tags = run.data.tags
    assert {"experiment", "stage", "preset", "preprocessor", "pixel_shuffle", "seed", "git_commit"} <= set(tags)
    assert tags["preset"] == "tiny" and tags["stage"] == "full" and tags["experiment"] == "entry"
    assert tags["preprocessor"].startswith("DynamicResolution(")  # the preset's, named, not "preset default"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|h2ovl==.*", tags["git_commit"])
    # Each param once: the resolved config's `model.optim.lr`, not Lightning's copy of the module's `optim` too.
    assert not {"optim", "optim.lr", "lr"} & set(run.data.params) and "preprocessor.class_path" not in run.data.params
    assert not [k for k in run.data.params if f"model.{k}" in run.data.params or f"data.{k}" in run.data.params]
    # Runs are named for what they are, with a suffix from the OS (the seed fixes MLflow's own random names).
    assert re.fullmatch(r"entry-full-seed0-[0-9a-f]{6}", run.info.run_name)
    assert (
        main(
            [
                "fit",
                "--config",
                str(config),
                "--trainer.max_steps",
                "1",
                "--trainer.default_root_dir",
                str(tmp_path / "again"),
            ]
        )
        == 0
    )
    assert len({r.info.run_name for r in mlflow_runs(tmp_path, "entry")}) == 2
    for key in (
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/pad_fraction",
        "train/visual_tokens_per_sample",
        "train/device/samples_per_sec",
        "train/device/items_per_sec",
        "train/device/flops_per_sec",
    ):
        assert key in run.data.metrics, key
    from mlflow.tracking import MlflowClient

    artifacts = {a.path for a in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts
    saved = torch.load(tmp_path / "runs/entry/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert saved["mlflow_run_id"] == run.info.run_id


def test_bad_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "bad.yaml").write_text("extends: [nowhere.yaml]\n")
    assert main(["fit", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "nowhere.yaml does not exist" in capsys.readouterr().err


def test_progress_counts_steps_to_max_steps_and_logs_lines_without_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """On endless data Lightning's bar reads "Epoch 0/-2"; ours counts optimizer steps to max_steps, and
    in a log file (no terminal) it logs `step k/N (..%), rate, ETA, train/loss` lines."""
    import logging

    from h2ovl.cli import main

    monkeypatch.chdir(tmp_path)
    config = tiny_run_config(tmp_path, "progress", 4)
    config["trainer"]["enable_progress_bar"] = True
    with caplog.at_level(logging.INFO, logger="h2ovl.training.progress"):
        assert main(["fit", "--config", str(write_config(tmp_path / "p.yaml", config))]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "h2ovl.training.progress"]
    assert [line.split(" (")[0] for line in lines] == ["step 1/4", "step 2/4", "step 3/4", "step 4/4"]
    assert re.match(r"step 2/4 \(50%\), \d+\.\d+ steps/s, ETA \w+, train/loss \d", lines[1]), lines[1]

    # A run bounded by epochs, as every paper recipe is: the total is epochs x steps per epoch.
    caplog.clear()
    epochs = tiny_run_config(tmp_path, "progress-epochs", -1, steps_per_epoch=3)
    epochs["trainer"].update(enable_progress_bar=True, max_epochs=2)
    with caplog.at_level(logging.INFO, logger="h2ovl.training.progress"):
        assert main(["fit", "--config", str(write_config(tmp_path / "e.yaml", epochs))]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "h2ovl.training.progress"]
    assert [line.split(" (")[0] for line in lines] == [f"step {k}/6" for k in range(1, 7)]


def test_sweep_heartbeat_shows_step_total_and_eta():
    from types import SimpleNamespace

    from h2ovl.sweeps.local import progress_line

    history = [SimpleNamespace(step=s, timestamp=1000 * s, value=2.0) for s in range(10)]  # a step a second
    assert progress_line(history, 100, 12.0) == "step 10/100, train/loss 2.000, ETA 1m30s (12 s)"
    assert progress_line([], 100, 3.0) == "starting (3 s)"
