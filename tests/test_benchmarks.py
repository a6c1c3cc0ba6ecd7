"""Benchmarks as users download them: every benchmark in every layout (official files with their image
folders, VLMEvalKit TSVs, Hugging Face parquet mirrors) is recognised from the file, each question read
with its own image and references, and answered and scored end to end through `h2ovl evaluate`; files
that are no layout we know are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from h2ovl.cli import main
from h2ovl.data.benchmarks import BENCHMARKS, open_benchmark
from h2ovl.data.meta import MetaError
from h2ovl.data.records import BadSample
from h2ovl.preprocessing.image_io import open_image

from support.benchmark_files import questions, write_hf_parquet, write_official, write_vlmevalkit

LAYOUTS = {"official": write_official, "vlmevalkit": write_vlmevalkit, "parquet": write_hf_parquet}
CASES = [(b, layout) for b in BENCHMARKS for layout in LAYOUTS]


@pytest.mark.parametrize(("benchmark", "layout"), CASES)
def test_every_benchmark_layout_is_recognised_and_read_question_by_question_with_its_image(
    tmp_path: Path, benchmark: str, layout: str
):
    path = LAYOUTS[layout](benchmark, tmp_path / "download")
    source = open_benchmark(path)
    assert source is not None and source.benchmark.name == benchmark
    expected = questions(benchmark)
    assert len(source) == len(expected)
    for index, question in enumerate(expected):
        record, images = source.load(index)
        assert record.turns[0][0] == "<image>\n" + question.question  # the question as written, image first
        assert tuple(record.reference["answers"]) == tuple(question.answers)
        assert record.reference["scorer"] == BENCHMARKS[benchmark].task
        assert (record.reference.get("category") is None) == (question.category is None)
        shared = layout == "vlmevalkit" and index == len(expected) - 1  # VLMEvalKit's index reference to row 0
        assert open_image(images[0]).size == (expected[0].size if shared else question.size)
        if benchmark in ("textvqa", "docvqa", "infovqa") and layout != "vlmevalkit":
            assert record.id == question.id  # the benchmark's own question id
        elif layout == "vlmevalkit":
            assert record.id == str(index)  # VLMEvalKit's `index`


def test_the_vlmevalkit_protocol_words_every_question_as_vlmevalkits_h2ovl_wrapper(tmp_path: Path):
    source = open_benchmark(write_vlmevalkit("docvqa", tmp_path), protocol_name="vlmevalkit")
    record, _ = source.load(0)
    assert (
        record.turns[0][0] == "<image>\nWhat is written in image 0?\nAnswer the question using a single word or phrase."
    )


def test_an_unknown_or_ambiguous_file_is_refused_by_name_never_read_as_something_else(tmp_path: Path):
    stray = tmp_path / "stray.json"
    stray.write_text(json.dumps({"dataset_name": "vizwiz", "data": [{"question": "q"}]}))
    with pytest.raises(MetaError, match="dataset 'vizwiz', which h2ovl does not read"):
        open_benchmark(stray)
    tsv = write_vlmevalkit("docvqa", tmp_path / "tsv")
    renamed = tsv.rename(tsv.with_name("mine.tsv"))
    with pytest.raises(MetaError, match="cannot tell which benchmark"):
        open_benchmark(renamed)
    assert open_benchmark(renamed, "docvqa").benchmark.name == "docvqa"
    with pytest.raises(MetaError, match="is docvqa, not textvqa"):
        open_benchmark(tsv.with_name("DocVQA_VAL.tsv") if tsv.exists() else renamed.rename(tsv), "textvqa")
    with pytest.raises(MetaError, match="is textvqa's layout, not ocrbench's"):
        open_benchmark(write_official("textvqa", tmp_path / "tv"), "ocrbench")
    parquet = write_hf_parquet("chartqa", tmp_path / "pq")
    with pytest.raises(MetaError, match="none of the Hugging Face benchmark mirrors"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"a": [1]}), tmp_path / "other.parquet")
        open_benchmark(tmp_path / "other.parquet")
    shard = parquet / "test-00000-of-00001.parquet"
    (parquet / "validation-00000-of-00001.parquet").write_bytes(shard.read_bytes())  # a second split beside it
    with pytest.raises(MetaError, match="holds the splits"):
        open_benchmark(parquet)
    assert len(open_benchmark(str(parquet / "test-*.parquet"))) == 3  # a glob names one
    plain = tmp_path / "records.jsonl"
    plain.write_text("{}\n")
    assert open_benchmark(plain) is None  # our own records: left to the mixture reader


def test_official_files_without_their_images_say_where_they_looked(tmp_path: Path):
    path = write_official("docvqa", tmp_path / "d")
    for image in (tmp_path / "d" / "val" / "documents").iterdir():
        image.rename(tmp_path / image.name)
    with pytest.raises(MetaError, match=r"first question \('documents/.*pass --images DIR"):
        open_benchmark(path)
    (tmp_path / "documents").mkdir()
    for image in tmp_path.glob("*.png"):
        image.rename(tmp_path / "documents" / image.name)
    assert len(open_benchmark(path, images=tmp_path)) == 3


def test_a_bad_row_is_a_named_skip_not_a_crash(tmp_path: Path):
    path = write_vlmevalkit("textvqa", tmp_path)
    lines = path.read_text().split("\n")
    lines[2] = lines[2].replace("['ans1'", "['ans1'+", 1)  # row 2's answer: no literal
    path.write_text("\n".join(lines))
    source = open_benchmark(path)
    with pytest.raises(BadSample, match=rf"{path.name} row 2: .*not a list literal"):
        source.load(1)
    assert source.load(0)[0].reference["answers"][0] == "ans0"


@pytest.mark.parametrize(("benchmark", "layout"), CASES)
def test_every_benchmark_layout_goes_through_evaluate_end_to_end(
    tmp_path: Path, tiny, benchmark: str, layout: str, capsys: pytest.CaptureFixture
):
    model, tokenizer, _ = tiny
    model.save_released(tmp_path / "released", tokenizer)
    data = LAYOUTS[layout](benchmark, tmp_path / "download")
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
                "3",
                "--out",
                str(out),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    task = BENCHMARKS[benchmark].task
    assert scores[f"{task}/n"] == 3 and scores["skipped"] == 0  # every question answered
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["scorer"] == task for r in records)
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0] == "benchmark,protocol,metric,value" and any(
        line.startswith(f"{benchmark},plain,{task}/") for line in summary
    )
    assert (out / "submission.json").is_file() == bool(BENCHMARKS[benchmark].submission_id and layout != "vlmevalkit")
    if (out / "submission.json").is_file():
        submission = json.loads((out / "submission.json").read_text())
        assert [entry[BENCHMARKS[benchmark].submission_id] for entry in submission] == [
            int(q.id) for q in questions(benchmark)
        ]
    if benchmark == "chartqa":
        assert scores["relaxed/human_n"] == 2 and scores["relaxed/augmented_n"] == 1
    if benchmark == "ocrbench":
        assert scores["ocrbench/final_score"] <= 3


def test_a_file_evaluate_cannot_read_is_one_line_and_exit_2_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    stray = tmp_path / "TextVQA_0.5.1_val.json"
    stray.write_text(json.dumps({"dataset_type": "val", "dataset_name": "vizwiz", "data": []}))
    assert main(["evaluate", "--released", str(tmp_path / "no-such-model"), "--data", str(stray)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"h2ovl evaluate: error: {stray}: a benchmark file of dataset 'vizwiz'")
        and len(err.splitlines()) == 1
    )


def test_data_inspect_sees_every_benchmark_question_with_its_tiles(tmp_path: Path, capsys: pytest.CaptureFixture):
    path = write_official("ocrbench", tmp_path)
    assert main(["data", "inspect", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ocrbench"]["built"] == 3 and summary["ocrbench"]["mean_tiles"] >= 1
