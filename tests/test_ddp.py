"""DDP on CPU: two gloo processes with micro-batch 2 train exactly as one process with micro-batch 2 and
two accumulated micro-batches (the same global batch of 4, derived from `data.global_batch_size`): the
same losses step by step and the same final weights. Every sample supervises the same number of tokens
(a one-letter answer + <|end|>), so a mean over ranks equals the mean over the global batch."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from conftest import conversation, noise_image, write_jsonl
from training_runs import h2ovl_fit, last_checkpoint, metric_history, mlflow_runs, tiny_run_config, write_config


def _letters_dataset(folder: Path, n: int = 24) -> Path:
    rng = random.Random(0)
    records = []
    for i in range(n):
        name = f"img{i}.png"
        noise_image(rng.randint(40, 160), rng.randint(40, 120), seed=i).save(folder / name)
        question = "<image>\nWhich letter comes " + " ".join(["next"] * rng.randint(1, 6)) + "?"
        records.append(conversation(question, rng.choice("abcdefghijklmnopqrstuvwxyz"), image=name, id=f"r{i}"))
    return write_jsonl(folder / "letters.jsonl", records)


def test_ddp_two_processes_match_single_process_with_accumulation(tmp_path: Path):
    data = _letters_dataset(tmp_path)
    steps = 4
    runs = {"single": ["--trainer.devices", "1"], "ddp": ["--trainer.devices", "2", "--trainer.strategy", "ddp"]}
    for name, devices in runs.items():
        config = tiny_run_config(tmp_path, name, steps, train=str(data), val=None, global_batch_size=4)
        h2ovl_fit(write_config(tmp_path / f"{name}.yaml", config), *devices)

    single, ddp = last_checkpoint(tmp_path, "single"), last_checkpoint(tmp_path, "ddp")
    assert single["global_step"] == ddp["global_step"] == steps
    for key, weight in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], weight, atol=2e-5, rtol=1e-4, msg=key)
    losses = {name: metric_history(tmp_path, mlflow_runs(tmp_path, name)[0].info.run_id, "train/loss") for name in runs}
    # The logged loss is the step's: mean over the two ranks, and over the two accumulated micro-batches.
    assert sorted(losses["ddp"]) == list(range(steps))
    for step, loss in losses["ddp"].items():
        assert loss == pytest.approx(losses["single"][step], abs=1e-4)
    # Every rank's data position is in the checkpoint (with packing or skips they differ), not rank zero's only.
    per_rank = ddp["H2OVLDataModule"]["per_rank"]
    assert [s["stream"]["world_size"] for s in per_rank] == [2, 2] and [s["stream"]["batches"] for s in per_rank] == [steps, steps]
