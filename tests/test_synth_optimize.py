"""Synthetic documents (deterministic, held-out split, every record trainable) and LitData optimization."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image

from h2ovl.cli import main
from h2ovl.data.meta import load_mixture
from h2ovl.data.samples import SampleBuilder
from h2ovl.data.sources import AnnotationSource, open_source
from h2ovl.data.template import ConversationEncoder
from h2ovl.synth import TASKS, write_synthetic
from tests.conftest import conversation


def digest(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(
        b"".join(p.relative_to(folder).as_posix().encode() + p.read_bytes() for p in files)
    ).hexdigest()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(out, n=36, seed=7, test_fraction=0.2)
    return out


def test_synthetic_is_deterministic_per_seed(synthetic, tmp_path):
    write_synthetic(tmp_path / "again", n=36, seed=7, test_fraction=0.2)
    write_synthetic(tmp_path / "other", n=36, seed=8, test_fraction=0.2)
    assert digest(synthetic) == digest(tmp_path / "again") != digest(tmp_path / "other")


def test_every_task_and_split_is_written_and_trainable(synthetic, tiny):
    model, tokenizer, preprocessor = tiny
    for meta, split in (("meta.json", "train"), ("meta_test.json", "test")):
        specs = load_mixture(synthetic / meta)
        assert [s.name for s in specs] == list(TASKS)
        sources = [open_source(s) for s in specs]
        builder = SampleBuilder(sources, preprocessor, ConversationEncoder(tokenizer, 4096), model.tokens_per_tile)
        for d, source in enumerate(sources):
            for r in range(len(source)):
                sample = builder.build(d, r)  # raises on any bad record
                assert sample.id.startswith(f"{source.spec.name}-{split}-")
    multi = json.loads((synthetic / "multi_image_train.jsonl").read_text().splitlines()[0])
    assert len(multi["image"]) == 2
    kie = json.loads((synthetic / "kie_train.jsonl").read_text().splitlines()[0])
    assert isinstance(json.loads(kie["conversations"][1]["value"]), dict) and kie["document"] in (
        "receipt",
        "drivers_license",
        "check",
    )


def test_text_task_includes_small_text_in_large_wide_and_tall_images(tmp_path):
    write_synthetic(tmp_path, n=40, seed=0, tasks=["text"], test_fraction=0)
    shapes = {json.loads(line)["shape"] for line in (tmp_path / "text_train.jsonl").read_text().splitlines()}
    assert shapes == {"tight", "wide", "tall", "large"}


def digit_pitch(folder, task: str, preprocessor, axis: str = "width") -> list[float]:
    """Pixels per digit in the preprocessor's tiles: the ink's horizontal extent / digits ("width"), or
    the ink's height ("height"), in tile pixels."""
    import numpy as np

    pitches = []
    for line in (folder / f"{task}_train.jsonl").read_text().splitlines():
        record = json.loads(line)
        answer = record["conversations"][1]["value"]
        gray = np.asarray(Image.open(folder / "images" / record["image"]).convert("L"))
        columns, rows = preprocessor.plan(gray.shape[1], gray.shape[0]).grids["grid"]
        if axis == "height":
            ink = np.flatnonzero((gray < 150).any(axis=1))
            pitches.append(preprocessor.tile_size * rows * (ink[-1] - ink[0] + 1) / gray.shape[0])
        else:
            ink = np.flatnonzero((gray < 150).any(axis=0))
            pitches.append(preprocessor.tile_size * columns * (ink[-1] - ink[0] + 1) / gray.shape[1] / len(answer))
    return sorted(pitches)


def test_digit_strips_show_the_square_scale_in_tiles_and_lose_it_in_one_tile(tmp_path):
    # The demo's premise: `digits_square` and `digits_sequence` are one tile per image under every
    # preprocessor (a neutral first stage); `digits_strip` in a row of tiles shows its digits at that
    # scale, squashed into one tile at a third or less.
    from h2ovl.preprocessing import DynamicResolution, FixedResize

    write_synthetic(
        tmp_path, n=120, seed=0, tasks=["digits_square", "digits_strip", "digits_sequence"], test_fraction=0
    )
    records = {
        task: [json.loads(line) for line in (tmp_path / f"{task}_train.jsonl").read_text().splitlines()]
        for task in ("digits_square", "digits_strip", "digits_sequence")
    }
    assert all(0.85 <= r["aspect"] <= 1.45 for r in records["digits_square"])
    assert all(
        2.6 <= r["aspect"] <= 4.3 and 3 <= len(r["conversations"][1]["value"]) <= 8 for r in records["digits_strip"]
    )
    tiled, fixed = DynamicResolution(tile_size=64, max_tiles=4), FixedResize(tile_size=64)
    for record in records["digits_sequence"]:  # 2-4 square images, their digits read in order
        assert 2 <= len(record["image"]) <= 4 and 2 <= len(record["conversations"][1]["value"]) <= 8
        for image in record["image"]:
            width, height = Image.open(tmp_path / "images" / image).size
            assert tiled.plan(width, height).grids["grid"] == (1, 1)
    median = lambda values: values[len(values) // 2]  # noqa: E731
    # Digit height in tile pixels (measured on these 40 + 40 images: square 23-32, strip in a row of tiles
    # 24-32): the same scale.
    square = digit_pitch(tmp_path, "digits_square", tiled, "height")
    assert square == digit_pitch(tmp_path, "digits_square", fixed, "height")  # one tile either way
    strip_rows = digit_pitch(tmp_path, "digits_strip", tiled, "height")
    assert abs(median(strip_rows) / median(square) - 1) < 0.1 and 20 <= square[0] and square[-1] <= 34
    # Digit advance in tile pixels (measured: strip in tiles 15-32, median 24; in one tile 5-10, median 7).
    strip_tiled, strip_fixed = (
        digit_pitch(tmp_path, "digits_strip", tiled),
        digit_pitch(tmp_path, "digits_strip", fixed),
    )
    assert strip_fixed[-1] < 0.5 * median(strip_tiled) and median(strip_fixed) < 0.35 * median(strip_tiled)


def test_synth_cli_and_bad_arguments(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--n", "4", "--tasks", "text", "text_only"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["train"].endswith("meta.json")
    assert main(["synth", "--out", str(tmp_path), "--n", "4", "--tasks", "poems"]) == 2
    assert "unknown synthetic tasks" in capsys.readouterr().err


def test_optimize_round_trips_records_and_counts_bad_ones(tmp_path, capsys):
    write_synthetic(tmp_path / "src", n=6, seed=1, tasks=["text", "multi_image", "text_only"], test_fraction=0)
    with (tmp_path / "src" / "text_train.jsonl").open("a") as file:
        file.write("{broken\n" + json.dumps(conversation("<image> q", "a", "nowhere.png")) + "\n")
    assert main(["data", "optimize", str(tmp_path / "src" / "meta.json"), str(tmp_path / "opt")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["text"] == {"records": 4, "written": 2, "skipped": {"malformed_json": 1, "image_error": 1}}

    originals = {s.name: AnnotationSource(s) for s in load_mixture(tmp_path / "src" / "meta.json")}
    for spec in load_mixture(tmp_path / "opt" / "meta.json"):
        optimized = open_source(spec, cache_dir=str(tmp_path / "cache"))
        original = originals[spec.name]
        loaded = sorted((optimized.load(i) for i in range(len(optimized))), key=lambda item: item[0].id)
        for index, (record, blobs) in enumerate(loaded):
            expected, paths = original.load(index)
            assert record.turns == expected.turns and record.id == expected.id
            assert blobs == [p.read_bytes() for p in paths]
