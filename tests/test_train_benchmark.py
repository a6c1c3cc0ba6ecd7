"""`benchmarks/train_gpu.py`, the paper stages' throughput and memory on a GPU: its workload (the stage's
own tiling over the stated page mix, the recipe's batch), its rows standing alone, its micro-batch search,
and its CPU form run with the packages the GPU image lacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training_runs import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import train_gpu  # noqa: E402  (a script, imported by path)


def test_the_recipe_batch_is_the_paper_configs():
    base = yaml.safe_load((ROOT / "experiments/paper/base.yaml").read_text())
    assert train_gpu.RECIPE_MICRO_BATCH == base["data"]["batching"]["batch_size"]
    assert train_gpu.RECIPE_GLOBAL_BATCH == base["data"]["batching"]["global_batch_size"]
    assert train_gpu.RECIPE_ACCUMULATION == 8  # 256 samples over 8 GPUs at 4 a micro-batch


def test_the_page_mix_is_drawn_in_its_stated_shares():
    assert sum(kind.share for kind in train_gpu.PAGE_MIX) == pytest.approx(1.0)
    pages = train_gpu.page_sequence(200)
    assert len(pages) == 200
    for kind in train_gpu.PAGE_MIX:
        assert pages.count(kind) == round(kind.share * 200)


def test_each_stage_tiles_pages_with_its_own_preprocessor():
    """The 2B's MSAC cuts a portrait page into 13 tiles (6 + 6 + thumbnail); the 0.8B's dynamic
    resolution into 7: the old benchmark's flat 7 understated the 2B by ~1.9x in visual tokens."""
    portrait = [kind for kind in train_gpu.PAGE_MIX if kind.width == 1654]
    assert train_gpu.stage_tiles("h2ovl-2b", portrait) == [13]
    assert train_gpu.stage_tiles("h2ovl-0.8b", portrait) == [7]
    mix = train_gpu.page_sequence(64)
    assert sum(train_gpu.stage_tiles("h2ovl-2b", mix)) > 1.5 * sum(train_gpu.stage_tiles("h2ovl-0.8b", mix))


@pytest.mark.parametrize("threshold", [0, 1, 2, 3, 5, 8, 13, 63, 64])
def test_the_micro_batch_search_finds_the_largest_passing_size(threshold: int):
    probed = []

    def passes(size: int) -> bool:
        probed.append(size)
        return size <= threshold

    assert train_gpu.largest_passing(passes, limit=64) == threshold
    assert len(probed) <= 14 and len(set(probed)) == len(probed)


def test_packed_rows_hold_the_padded_rows_samples_with_less_padding():
    from h2ovl.model.tokenizer import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tiles = train_gpu.stage_tiles("tiny-mistral", train_gpu.page_sequence(24))
    samples = [train_gpu.synthetic_sample(tokenizer, str(i), n, 64, 16, 32, 8) for i, n in enumerate(tiles)]
    padded = train_gpu.padded_batches(samples, 4, pad_id=0)
    packed = train_gpu.packed_batches(samples, rows=1, pack_tokens=1024, pack_tiles=64, pad_id=0)
    assert sorted(i for b in padded for i in b["ids"]) == sorted(i for b in packed for i in b["ids"])
    assert all(b["input_ids"].shape[1] <= 1024 and int(b["tiles_per_sample"].sum()) <= 64 for b in packed)

    def real(batches: list[dict]) -> float:
        return sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["attention_mask"].numel() for b in batches)

    assert real(packed) > real(padded)
    # Useful FLOPs count each sample alone: the same whatever the layout.
    from h2ovl.model import H2OVL  # noqa: F401
    from h2ovl.training.module import H2OVLModule

    model = H2OVLModule(preset="tiny-mistral").model
    assert sum(train_gpu.sample_flops(model, b) for b in padded) == sum(
        train_gpu.sample_flops(model, b) for b in packed
    )


def test_a_row_that_raises_is_that_rows_result_and_the_next_rows_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    calls = []

    def fake_run(stage, mode, checkpointing, layout, args, tokenizer_dir):
        calls.append((mode, checkpointing, layout))
        if mode == "single" and checkpointing and layout == "padded":
            raise RuntimeError("a kernel failed")
        return {
            **train_gpu.row_key(stage, mode, checkpointing, layout, args),
            "tiles_per_sample": 11.0,
            "tokens_per_sample": 3000.0,
            "samples_per_s": 2.0,
            "real_token_fraction": 0.9,
            "mfu": None,
            "peak_reserved_gib": 0.0,
            "error": None,
        }

    monkeypatch.setattr(train_gpu, "run", fake_run)
    out = tmp_path / "rows.json"
    assert train_gpu.main(["--tiny", "--stages", "2b/finetune", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(calls) == len(rows) == 8 and rows[0]["error"] == "RuntimeError: a kernel failed"
    assert all(r["error"] is None and r["samples_per_s"] == 2.0 for r in rows[1:])
    printed = capsys.readouterr().out
    assert "single padded checkpointing on: RuntimeError: a kernel failed" in printed
    assert "| failed: RuntimeError" in printed


def test_the_cpu_form_runs_every_mode_and_layout_without_the_packages_the_gpu_image_lacks(tmp_path: Path):
    """The tracker, sweep, data-streaming and scorer packages are absent, as on the GPU machine's image."""
    out = tmp_path / "rows.json"
    absent = "mlflow,litdata,rapidfuzz,zss,datasets,braceexpand,webdataset,optuna,submitit"
    command = [sys.executable, str(ROOT / "tests/support/absent_packages.py"), absent]
    command += [str(ROOT / "benchmarks/train_gpu.py"), "--tiny", "--stages", "2b/finetune", "--checkpointing", "off"]
    command += ["--samples", "8", "--accumulate", "2", "--warmup", "1", "--steps", "1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [kind["name"] for kind in report["page_mix"]] == [kind.name for kind in train_gpu.PAGE_MIX]
    rows = report["rows"]
    assert [(r["mode"], r["layout"]) for r in rows] == [
        ("single", "padded"),
        ("single", "packed"),
        ("fsdp", "padded"),
        ("fsdp", "packed"),
    ]
    assert all(r["error"] is None and r["samples_per_s"] > 0 and r["tflops_per_s"] > 0 for r in rows)
    assert all(r["max_tiles"] == 13 and r["accumulation"] == 2 for r in rows)  # MSAC's portrait page
    padded, packed = rows[0], rows[1]
    assert packed["real_token_fraction"] > padded["real_token_fraction"]
