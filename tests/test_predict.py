"""`h2ovl validate|test|predict` after `fit`, and the prompt/reference split that generation relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import conversation, noise_image, write_jsonl
from h2ovl.cli import main
from h2ovl.data.datamodule import H2OVLDataModule
from h2ovl.model.tokenizer import ANSWER
from h2ovl.training.prediction import prompt_batch
from training_runs import mlflow_runs, tiny_run_config, write_config


def test_prompts_stop_before_the_first_answer_and_keep_their_tiles(tmp_path: Path, tiny):
    model, tokenizer, preprocessor = tiny
    noise_image(120, 60).save(tmp_path / "a.png")
    noise_image(50, 90, seed=1).save(tmp_path / "b.png")
    data = write_jsonl(tmp_path / "d.jsonl", [
        conversation("<image>\nRead it.", "HELLO 42", image="a.png", id="img"),
        conversation("What is two plus two?", "four", id="text"),
        {"id": "late", "image": "b.png", "conversations": [
            {"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "hi"},
            {"from": "human", "value": "<image>\nAnd now?"}, {"from": "gpt", "value": "tall"}]},
    ])
    dm = H2OVLDataModule(train=str(data), val=str(data), batch_size=3).bind(tokenizer, preprocessor, model.tokens_per_tile)
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
    monkeypatch.chdir(tmp_path)
    config = tiny_run_config(tmp_path, "after", 2)
    config["trainer"]["limit_val_batches"] = 2
    config["data"]["val_limit"] = 6
    path = write_config(tmp_path / "run.yaml", config)
    assert main(["fit", "--config", str(path)]) == 0
    for command in ("validate", "test"):
        assert main([command, "--config", str(path), "--ckpt_path", "last"]) == 0
    assert main(["predict", "--config", str(path), "--ckpt_path", "last", "--model.max_new_tokens", "5"]) == 0
    (run,) = mlflow_runs(tmp_path, "after")  # validate and test logged into the training run
    assert {"val/loss", "test/loss", "train/loss"} <= set(run.data.metrics)
    records = [json.loads(line) for line in (tmp_path / "runs/after/predictions.jsonl").read_text().splitlines()]
    assert len(records) == 6 and len({r["id"] for r in records}) == 6
    assert all(isinstance(r["prediction"], str) and r["answer"] for r in records)
