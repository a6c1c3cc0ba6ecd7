"""Evaluating models: generation-based validation with the best checkpoint by a chosen metric,
`h2ovl evaluate` from a training checkpoint and from a released model directory, and the synthetic test
split's scorers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from h2ovl.cli import main
from h2ovl.data.processor import Processor
from h2ovl.data.records import parse_line, to_record
from h2ovl.scoring import read_predictions, score_samples
from h2ovl.synth import write_synthetic

from conftest import noise_image, write_jsonl
from training_runs import metric_history, mlflow_runs, tiny_run_config, write_config


def test_validation_generates_scores_and_keeps_the_best_checkpoint_then_evaluate_logs_to_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    monkeypatch.chdir(tmp_path)
    config = tiny_run_config(tmp_path, "gen", 4, val_batch_size=4)
    config["model"] = {"val_generation": {"samples": 5, "max_new_tokens": 8}}
    config["trainer"].update({"limit_val_batches": 2, "val_check_interval": 2})
    config["best"] = {"monitor": "val/cer/cer", "mode": "min"}
    path = write_config(tmp_path / "run.yaml", config)
    assert main(["fit", "--config", str(path)]) == 0

    (run,) = mlflow_runs(tmp_path, "gen")
    history = metric_history(tmp_path, run.info.run_id, "val/cer/cer")
    assert sorted(history) == [1, 3]  # both validation runs (after steps 2 and 4), not the sanity check
    n_scored = sum(run.data.metrics.get(f"val/{task}/n", 0) for task in ("cer", "kie", "anls"))
    assert n_scored == 5  # exactly the fixed subset, each sample under its record's scorer
    assert "val/kie/score" in run.data.metrics or "val/anls/anls" in run.data.metrics
    best = list((tmp_path / "runs/gen/checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1

    capsys.readouterr()
    out = tmp_path / "eval"
    (test_meta,) = (tmp_path / "synthetic").glob("*/meta_test.json")
    assert (
        main(
            [
                "evaluate",
                "--ckpt",
                str(best[0]),
                "--data",
                str(test_meta),
                "--limit",
                "5",
                "--batch-size",
                "2",
                "--max-new-tokens",
                "6",
                "--out",
                str(out),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 5 and all(
        r["scorer"] in ("cer", "kie", "anls") and isinstance(r["prediction"], str) for r in records
    )
    assert json.loads((out / "scores.json").read_text())["skipped"] == 0
    assert scores == {
        **json.loads((out / "scores.json").read_text()),
        "run_id": run.info.run_id,
        "predictions": str(out / "predictions.jsonl"),
    }
    # The predictions file scores the same through `h2ovl score`.
    rescored = score_samples(read_predictions(out / "predictions.jsonl"), "auto")
    assert all(scores[key] == pytest.approx(value) for key, value in rescored.items())

    (after,) = mlflow_runs(tmp_path, "gen")  # evaluation landed in the checkpoint's training run
    assert after.data.metrics["eval/meta_test/cer/n"] == scores["cer/n"]
    from mlflow.tracking import MlflowClient

    artifacts = {
        a.path
        for a in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").list_artifacts(run.info.run_id, "eval/meta_test")
    }
    assert artifacts == {
        f"eval/meta_test/{name}" for name in ("predictions.jsonl", "scores.json", "summary.csv", "summary.md")
    }


def test_evaluate_a_released_model_on_benchmark_style_records(tmp_path: Path, tiny, capsys: pytest.CaptureFixture):
    model, tokenizer, _ = tiny
    model.save_released(tmp_path / "released", tokenizer)
    noise_image(90, 60).save(tmp_path / "a.png")
    data = write_jsonl(
        tmp_path / "bench.jsonl",
        [
            {
                "id": "q1",
                "image": "a.png",
                "question": "What is written?",
                "answers": ["stop", "STOP", "stop sign"],
                "scorer": "anls",
            },
            {"id": "q2", "image": "a.png", "question": "Fields as JSON?", "answer": {"total": "1.00"}, "scorer": "kie"},
            {
                "id": "q3",
                "image": "missing.png",
                "question": "What?",
                "answers": ["x"],
                "scorer": "anls",
            },  # bad: counted
        ],
    )
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--released",
                str(tmp_path / "released"),
                "--data",
                str(data),
                "--max-new-tokens",
                "4",
                "--out",
                str(out),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["anls/n"] == 1 and scores["kie/n"] == 1
    assert scores["skipped"] == 1 and scores["skipped_by_reason"] == {"bench/image_error": 1}
    records = {r["id"]: r for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert records["q1"]["answers"] == ["stop", "STOP", "stop sign"]  # every reference kept for scoring
    assert json.loads(records["q2"]["answer"]) == {"total": "1.00"}
    (run,) = mlflow_runs(tmp_path, "evaluate")
    assert run.info.run_id == scores["run_id"] and run.data.metrics["eval/bench/skipped"] == 1


def test_released_models_are_evaluated_with_their_inference_tile_rule(tmp_path: Path, tiny, monkeypatch):
    """Two images in one record: a released model gives each the whole budget, a checkpoint of ours splits it."""
    from h2ovl.data.batching import Batching
    from h2ovl.data.datamodule import H2OVLDataModule
    from h2ovl.preprocessing import DynamicResolution

    model, tokenizer, _ = tiny
    noise_image(2000, 500).save(tmp_path / "wide.png")
    data = write_jsonl(
        tmp_path / "two.jsonl",
        [
            {
                "id": "q",
                "image": ["wide.png", "wide.png"],
                "question": "Same?",
                "answers": ["yes", "y"],
                "scorer": "anls",
            },
        ],
    )
    preprocessor = DynamicResolution(tile_size=model.vision.tile_size, max_tiles=6, use_thumbnail=False)
    tiles = {}
    for split_budget in (True, False):
        module = H2OVLDataModule(batching=Batching(val_batch_size=1)).bind(
            Processor(tokenizer, preprocessor, model.tokens_per_tile)
        )
        (batch,) = list(module.eval_dataloader(str(data), split_budget=split_budget))
        tiles[split_budget] = batch["pixel_values"].shape[0]
    assert tiles == {True: 2 * 3, False: 2 * 4}  # 6 // 2 = 3 -> (3, 1) each; whole budget -> (4, 1) each

    seen = []
    original = H2OVLDataModule.eval_dataloader
    monkeypatch.setattr(
        H2OVLDataModule,
        "eval_dataloader",
        lambda self, *a, **k: seen.append(k["split_budget"]) or original(self, *a, **k),
    )
    model.save_released(tmp_path / "released", tokenizer)
    assert (
        main(
            [
                "evaluate",
                "--released",
                str(tmp_path / "released"),
                "--data",
                str(data),
                "--max-new-tokens",
                "2",
                "--out",
                str(tmp_path / "eval"),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )
        == 0
    )
    assert seen == [False]


def test_evaluate_needs_exactly_one_model(tmp_path: Path, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        main(["evaluate", "--data", "x.jsonl"])
    assert main(["evaluate", "--ckpt", str(tmp_path / "nope.ckpt"), "--data", "x.jsonl"]) == 2
    assert "nope.ckpt does not exist" in capsys.readouterr().err


def test_synthetic_test_split_has_matching_scorers_and_perfect_answers_score_perfectly(tmp_path: Path):
    metas = write_synthetic(tmp_path, 60, seed=3, max_side=200)
    samples = []
    from h2ovl.scoring import Scored

    for meta_entry in json.loads(metas["test"].read_text()).values():
        for number, line in enumerate((tmp_path / meta_entry["annotation"]).read_text().splitlines(), 1):
            record = to_record(parse_line(line, f"{number}"), f"{number}")
            reference = record.reference
            samples.append(
                Scored(
                    id=record.id,
                    prediction=reference["answer"],
                    answers=(reference["answer"],),
                    scorer=reference["scorer"],
                    where=record.where,
                )
            )
    assert {s.scorer for s in samples} == {"cer", "kie", "anls"}
    scores = score_samples(samples, "auto")
    assert scores["cer/cer"] == 0 and scores["cer/exact_match"] == 1
    assert scores["kie/score"] == 1 and scores["kie/json_parse_rate"] == 1
    assert scores["anls/anls"] == 1
    assert sum(scores[f"{t}/n"] for t in ("cer", "kie", "anls")) == len(samples)


def test_generation_subset_is_fixed_whatever_the_batching(tmp_path: Path, tiny):
    """`positions` in an evaluation batch are places in the dataset, so "the first N" does not depend on
    batch size or on how a DistributedSampler deals samples to ranks."""
    model, tokenizer, preprocessor = tiny
    from h2ovl.data.batching import Batching
    from h2ovl.data.datamodule import H2OVLDataModule

    metas = write_synthetic(tmp_path, 30, seed=0, max_side=160)
    seen = []
    for batch_size in (1, 4):
        dm = H2OVLDataModule(val=str(metas["test"]), batching=Batching(val_batch_size=batch_size)).bind(
            Processor(tokenizer, preprocessor, model.tokens_per_tile)
        )
        seen.append(
            [
                (p, i)
                for batch in dm.eval_dataloader(str(metas["test"]))
                for p, i in zip(batch["positions"], batch["ids"])
            ]
        )
    assert seen[0] == seen[1] and [p for p, _ in seen[0]] == list(range(len(seen[0])))


def test_default_evaluation_folders_are_named_after_the_run():
    from h2ovl.evaluate import EvaluationRequest, default_out

    a = default_out(EvaluationRequest(data="d/meta_test.json", ckpt="outputs/runs/a/checkpoints/last.ckpt"))
    b = default_out(EvaluationRequest(data="d/meta_test.json", ckpt="outputs/runs/b/checkpoints/last.ckpt"))
    assert a == Path("outputs/eval/a-last-meta_test") and a != b


def test_the_last_validation_of_a_fit_answers_final_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Cheap validations along the way, the final figure (the one a sweep reads) on more samples."""
    monkeypatch.chdir(tmp_path)
    config = tiny_run_config(
        tmp_path,
        "final",
        6,
        val_batch_size=4,
        synthetic={
            "out": str(tmp_path / "synthetic"),
            "n": 40,
            "max_side": 256,
            "tasks": ["digits_strip"],
            "test_fraction": 0.2,
        },
    )
    config["model"] = {"val_generation": {"samples": 2, "final_samples": 6, "task": "cer", "max_new_tokens": 4}}
    config["trainer"].update({"limit_val_batches": 2, "val_check_interval": 2})
    assert main(["fit", "--config", str(write_config(tmp_path / "run.yaml", config))]) == 0
    (run,) = mlflow_runs(tmp_path, "final")
    assert metric_history(tmp_path, run.info.run_id, "val/cer/n") == {
        1: 2,
        3: 2,
        5: 6,
    }  # steps 2, 4: 2; step 6 (max_steps): 6


def test_asking_for_more_answers_than_the_validation_batches_hold_says_how_many_are_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.chdir(tmp_path)
    config = tiny_run_config(tmp_path, "capped", 2, val_batch_size=4)
    config["model"] = {"val_generation": {"samples": 4, "final_samples": 9, "task": "cer", "max_new_tokens": 2}}
    config["trainer"].update({"limit_val_batches": 2, "val_check_interval": 2})
    assert main(["fit", "--config", str(write_config(tmp_path / "run.yaml", config))]) == 0
    assert (
        "asks for 9 answered validation samples, but validation stops after trainer.limit_val_batches=2 batches "
        "of 4 samples (data.batching.val_batch_size): 8 are scored"
    ) in caplog.text
    (run,) = mlflow_runs(tmp_path, "capped")
    assert run.data.metrics["val/cer/n"] == 8
