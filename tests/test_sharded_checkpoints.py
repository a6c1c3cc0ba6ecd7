"""Sharded checkpoints (FSDP2's `save_distributed_checkpoint: true`: a folder in PyTorch's DCP format) are
accepted wherever a checkpoint is: resume, `model.init.checkpoint`, `h2ovl evaluate --ckpt`, `h2ovl export`,
and `h2ovl consolidate` turns one into a single file. Their index is unpickled as data only."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from test_distributed import STEPS, _assert_same_weights, _fit, _uneven_dataset

from h2ovl.cli import main
from h2ovl.errors import CheckpointError
from h2ovl.training.sharded import is_sharded_checkpoint
from h2ovl.training.weights import load_checkpoint, load_checkpoint_meta

from training_runs import h2ovl_fit, last_checkpoint, tiny_run_config, write_config


def test_a_sharded_save_written_in_one_process_reads_whole(tmp_path: Path):
    """What `load_checkpoint` does with a DCP folder (DCP's private whole-state reader, pinned here):
    Lightning's `meta.pt` and the shards, as one dictionary with tensors whole."""
    state = {
        "state_dict": {"model.w": torch.arange(12.0).reshape(3, 4)},
        "optimizer_0": {"state": {"model.w": {"step": torch.tensor(2.0)}}},
    }
    dcp.save(state, checkpoint_id=str(tmp_path / "ckpt"), no_dist=True)
    torch.save({"global_step": 7, "mlflow_run_id": "abc"}, tmp_path / "ckpt/meta.pt")
    assert is_sharded_checkpoint(tmp_path / "ckpt")
    checkpoint = load_checkpoint(tmp_path / "ckpt")
    torch.testing.assert_close(checkpoint["state_dict"]["model.w"], state["state_dict"]["model.w"])
    assert checkpoint["global_step"] == 7 and checkpoint["optimizer_states"][0]["state"]["model.w"]["step"] == 2
    assert load_checkpoint_meta(tmp_path / "ckpt") == {"global_step": 7, "mlflow_run_id": "abc"}


class _Planted:
    def __reduce__(self):
        return (os.system, ("touch planted-ran",))


def test_a_planted_sharded_index_is_refused_and_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / ".metadata").write_bytes(pickle.dumps(_Planted()))
    with pytest.raises(
        CheckpointError, match=r"refusing a sharded checkpoint .*posix.system|refusing a sharded checkpoint .*os.system"
    ):
        load_checkpoint(folder)
    assert not (tmp_path / "planted-ran").exists()
    assert main(["consolidate", str(folder), "--out", str(tmp_path / "out.ckpt")]) == 2
    assert main(["consolidate", str(tmp_path), "--out", str(tmp_path / "out.ckpt")]) == 2  # not a sharded save


@pytest.mark.slow  # two-process FSDP2 runs
def test_fsdp2_sharded_saves_are_read_everywhere_a_checkpoint_is(tmp_path: Path, capsys: pytest.CaptureFixture):
    data = _uneven_dataset(tmp_path)
    sharded = ("--trainer.strategy.init_args.save_distributed_checkpoint", "true")
    _fit(tmp_path, "single", data, "--trainer.devices", "1", weight_decay=0.5)
    _fit(tmp_path, "fsdp", data, *sharded, "--checkpoint.save_top_k", "-1", trainer="fsdp-cpu.yaml", weight_decay=0.5)
    folder = tmp_path / "runs/fsdp/checkpoints/last.ckpt"
    assert is_sharded_checkpoint(folder)
    whole = load_checkpoint(folder)
    assert whole["global_step"] == STEPS and whole["optimizer_states"]
    _assert_same_weights(last_checkpoint(tmp_path, "single")["state_dict"], whole["state_dict"])

    # A resume from the halfway folder (Lightning reads the shards) ends where the whole run did.
    (halfway,) = (tmp_path / "runs/fsdp/checkpoints").glob(f"*step={STEPS // 2}.ckpt")
    _fit(tmp_path, "resumed", data, *sharded, "--ckpt_path", str(halfway), trainer="fsdp-cpu.yaml", weight_decay=0.5)
    _assert_same_weights(
        whole["state_dict"], load_checkpoint(tmp_path / "runs/resumed/checkpoints/last.ckpt")["state_dict"]
    )

    # One file, equal to the folder.
    assert main(["consolidate", str(folder), "--out", str(tmp_path / "one.ckpt")]) == 0
    assert f"{tmp_path / 'one.ckpt'}: step {STEPS}" in capsys.readouterr().out
    _assert_same_weights(whole["state_dict"], load_checkpoint(tmp_path / "one.ckpt")["state_dict"])

    # The next stage starts from its weights, on one process.
    config = tiny_run_config(tmp_path, "next", 1, train=str(data), val=None)
    h2ovl_fit(write_config(tmp_path / "next.yaml", config), "--model.init.checkpoint", str(folder))

    # evaluate and export read it as they read a file.
    from h2ovl.evaluate import load_module

    module, run_id = load_module(str(folder), None, max_new_tokens=4)
    assert run_id == load_checkpoint(tmp_path / "one.ckpt").get("mlflow_run_id")
    _assert_same_weights(whole["state_dict"], {f"model.{k}": v for k, v in module.model.state_dict().items()})
    assert main(["export", "--ckpt", str(folder), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export/config.json").is_file()
