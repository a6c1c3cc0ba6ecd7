"""`h2ovl validate|test|predict` after `fit`, and the prompt/reference split that generation relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from h2ovl.cli import main
from h2ovl.data.batching import Batching
from h2ovl.data.datamodule import H2OVLDataModule
from h2ovl.data.processor import Processor
from h2ovl.model.tokenizer import ANSWER
from h2ovl.synth import TASKS
from h2ovl.training.generation import prompt_batch

from conftest import conversation, noise_image, write_jsonl
from training_runs import metric_history, mlflow_runs, tiny_run_config, write_config


def test_prompts_stop_before_the_first_answer_and_keep_their_tiles(tmp_path: Path, tiny):
    model, tokenizer, preprocessor = tiny
    noise_image(120, 60).save(tmp_path / "a.png")
    noise_image(50, 90, seed=1).save(tmp_path / "b.png")
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [
            conversation("<image>\nRead it.", "HELLO 42", image="a.png", id="img"),
            conversation("What is two plus two?", "four", id="text"),
            {
                "id": "late",
                "image": "b.png",
                "conversations": [
                    {"from": "human", "value": "Say hi."},
                    {"from": "gpt", "value": "hi"},
                    {"from": "human", "value": "<image>\nAnd now?"},
                    {"from": "gpt", "value": "tall"},
                ],
            },
        ],
    )
    dm = H2OVLDataModule(train=str(data), test=str(data), batching=Batching(batch_size=3)).bind(
        Processor(tokenizer, preprocessor, model.tokens_per_tile)
    )
    batch = next(iter(dm.predict_dataloader()))
    prompts = prompt_batch(batch, model, tokenizer.pad_token_id)
    assert [r["answer"] for r in batch["references"]] == ["HELLO 42", "four", "hi"]
    answer_id = tokenizer.convert_tokens_to_ids(ANSWER)
    assert (prompts["input_ids"][:, -1] == answer_id).all()  # left-padded, each ends at <|answer|>
    assert (prompts["attention_mask"].sum(1) < batch["attention_mask"].sum(1)).all()
    # Only the first sample's image precedes its first answer: the third one's image is not in its prompt.
    first_tiles = int(batch["tiles_per_sample"][0])
    assert prompts["pixel_values"].shape[0] == first_tiles
    assert (prompts["pixel_values"] == batch["pixel_values"][:first_tiles]).all()
    generated = model.generate(**prompts, max_new_tokens=4)
    assert generated.shape[0] == 3
    # A subset of rows: only their prompts and tiles (the text-only second row has none).
    subset = prompt_batch(batch, model, tokenizer.pad_token_id, rows=[1, 2])
    assert subset["input_ids"].shape[0] == 2 and subset["pixel_values"] is None


def test_validate_test_predict_after_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Each stage reads its own split, all of it unless limited; validate and test of a checkpoint log into
    its run at the checkpoint's step, validate under its own `validate/` names."""
    monkeypatch.chdir(tmp_path)
    config = tiny_run_config(tmp_path, "after", 3)
    config["trainer"].update(limit_val_batches=2, val_check_interval=3)
    config["data"]["val_limit"] = 6
    path = write_config(tmp_path / "run.yaml", config)
    assert main(["fit", "--config", str(path)]) == 0
    for command in ("validate", "test"):
        assert main([command, "--config", str(path), "--ckpt_path", "last"]) == 0
    assert main(["predict", "--config", str(path), "--ckpt_path", "last", "--model.max_new_tokens", "5"]) == 0
    (run,) = mlflow_runs(tmp_path, "after")  # validate and test logged into the training run
    assert {"val/loss", "validate/loss", "test/loss", "train/loss"} <= set(run.data.metrics)
    assert run.data.metrics["test/loss"] != run.data.metrics["validate/loss"]  # other data: the test split
    assert list(metric_history(tmp_path, run.info.run_id, "val/loss")) == [2]  # no false point at step 0
    assert list(metric_history(tmp_path, run.info.run_id, "validate/loss")) == [2]
    assert list(metric_history(tmp_path, run.info.run_id, "test/loss")) == [2]
    records = [json.loads(line) for line in (tmp_path / "runs/after/predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(TASKS) and all(
        "-test-" in r["id"] for r in records
    )  # the whole test split (a sample per task)
    assert all(isinstance(r["prediction"], str) and r["answer"] for r in records)


def test_a_resume_with_other_checkpoint_settings_keeps_one_newest_last_ckpt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Resuming with another `every_n_train_steps` must not leave `last-v1.ckpt` (newer) beside an older
    `last.ckpt` that `--ckpt_path last` and `model.init.checkpoint` would then take."""
    import torch

    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path / "run.yaml", tiny_run_config(tmp_path, "last", 4))
    assert main(["fit", "--config", str(path)]) == 0
    assert (
        main(
            [
                "fit",
                "--config",
                str(path),
                "--trainer.max_steps",
                "7",
                "--checkpoint.every_n_train_steps",
                "3",
                "--ckpt_path",
                "last",
            ]
        )
        == 0
    )
    checkpoints = sorted(p.name for p in (tmp_path / "runs/last/checkpoints").glob("last*.ckpt"))
    assert checkpoints == ["last.ckpt"]
    assert (
        torch.load(tmp_path / "runs/last/checkpoints/last.ckpt", weights_only=False, map_location="cpu")["global_step"]
        == 7
    )
