"""Record validation (every bad-input case) and meta-file loading (errors at start-up, naming the key)."""

from __future__ import annotations

import json

import pytest

from h2ovl.data.meta import MetaError, load_mixture
from h2ovl.data.records import BadSample, parse_line, to_record
from h2ovl.data.sources import open_source
from tests.conftest import conversation, noise_image, write_jsonl


def turns(*pairs):
    out = []
    for question, answer in pairs:
        out += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return out


@pytest.mark.parametrize(
    "raw, reason",
    [
        ({"id": 1}, "no_conversations"),
        ({"conversations": []}, "no_conversations"),
        ({"conversations": turns(("q", "a"))[:1]}, "not_alternating"),
        ({"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}, "not_alternating"),
        ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": 3}]}, "not_alternating"),
        ({"conversations": turns(("q", "  "))}, "empty_answer"),
        ({"conversations": turns(("<image> <image>", "a")), "image": "x.png"}, "image_mismatch"),
        ({"conversations": turns(("<image>", "a")), "image": ["x.png", "y.png"]}, "image_mismatch"),
        ({"conversations": turns(("<image>", "a"))}, "image_mismatch"),
        ({"conversations": turns(("q", "a")), "image": 5}, "malformed_json"),
    ],
)
def test_bad_records_name_their_reason_and_place(raw, reason):
    with pytest.raises(BadSample) as caught:
        to_record(raw, "data.jsonl:7")
    assert caught.value.reason == reason
    assert "data.jsonl:7" in str(caught.value)


def test_malformed_line():
    with pytest.raises(BadSample, match="data.jsonl:3") as caught:
        parse_line('{"id": 1, "conversations": [', "data.jsonl:3")
    assert caught.value.reason == "malformed_json"
    with pytest.raises(BadSample):
        parse_line("[1, 2]", "data.jsonl:4")


def test_images_without_placeholder_go_before_the_first_question():
    record = to_record({"conversations": turns(("read", "a"), ("again", "b")), "image": ["x.png", "y.png"]}, "w")
    assert record.turns[0][0] == "<image>\n<image>\nread"
    assert record.turns[1][0] == "again"
    assert record.images == ("x.png", "y.png")
    text_only = to_record({"conversations": turns(("hi", "there"))}, "w")
    assert text_only.images == () and text_only.turns == (("hi", "there"),)


def write_dataset(tmp_path, name="ocr", records=None):
    (tmp_path / "images").mkdir(exist_ok=True)
    noise_image(40, 20).save(tmp_path / "images" / "a.png")
    write_jsonl(tmp_path / f"{name}.jsonl", records or [conversation("<image>\nread", "x", "a.png")])


def test_meta_file_relative_paths_and_fields(tmp_path):
    write_dataset(tmp_path)
    meta = {
        "ocr": {
            "root": "images",
            "annotation": "ocr.jsonl",
            "relative_to": "meta",
            "repeat_time": 0.5,
            "max_dynamic_patch": 2,
            "length": 1,
        }
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    (spec,) = load_mixture(tmp_path / "meta.json")
    assert spec.name == "ocr" and spec.repeat_time == 0.5 and spec.max_dynamic_patch == 2
    assert spec.root == str(tmp_path / "images") and spec.annotation == str(tmp_path / "ocr.jsonl")


def test_a_stock_internvl_meta_file_finds_its_paths_from_the_working_directory(tmp_path, monkeypatch):
    """InternVL's own layout: the meta file under shell/data/, paths relative to the folder training runs in
    (`playground/...`), absolute image paths in the annotations, `data_augment`/`length` keys."""
    playground = tmp_path / "playground"
    (playground / "data" / "ocr").mkdir(parents=True)
    (playground / "opensource").mkdir()
    elsewhere = tmp_path / "cluster" / "images"
    elsewhere.mkdir(parents=True)
    noise_image(40, 20).save(playground / "data" / "ocr" / "a.png")
    noise_image(50, 30).save(elsewhere / "b.png")
    write_jsonl(
        playground / "opensource" / "ocr.jsonl",
        [conversation("<image>\nread", "x", "ocr/a.png"), conversation("<image>\nread", "y", str(elsewhere / "b.png"))],
    )
    (tmp_path / "shell" / "data").mkdir(parents=True)
    meta = tmp_path / "shell" / "data" / "finetune.json"
    meta.write_text(
        json.dumps(
            {
                "ocr": {
                    "root": "playground/data/",
                    "annotation": "playground/opensource/ocr.jsonl",
                    "data_augment": False,
                    "repeat_time": 1,
                    "length": 2,
                }
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    (spec,) = load_mixture(meta)
    assert spec.root == str(tmp_path / "playground" / "data") and spec.allow_outside_root
    source = open_source(spec)
    assert [paths[0] for _, paths in (source.load(0), source.load(1))] == [
        playground / "data" / "ocr" / "a.png",
        elsewhere / "b.png",
    ]
    monkeypatch.chdir(tmp_path / "shell")  # elsewhere, the same file names where its paths were looked for
    with pytest.raises(
        MetaError,
        match=r"annotation file .*shell/playground/opensource/ocr.jsonl does not exist \(relative paths are found from the working directory",
    ):
        load_mixture(meta)


def test_llava_list_and_bare_jsonl_are_one_dataset_mixtures(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "llava.json").write_text(json.dumps([conversation("q", "a")]))
    (llava,) = load_mixture(tmp_path / "llava.json")
    (jsonl,) = load_mixture(tmp_path / "ocr.jsonl")
    assert llava.root == jsonl.root == str(tmp_path)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"annotation": "ocr.jsonl"}, "missing 'root'"),
        ({"root": "images"}, "missing 'annotation'"),
        ({"root": "images", "annotation": "nope.jsonl"}, "nope.jsonl does not exist"),
        ({"root": "nowhere", "annotation": "ocr.jsonl"}, "nowhere is not a folder"),
        ({"root": "images", "annotation": "ocr.jsonl", "repeat_time": -1}, "repeat_time"),
        ({"root": "images", "annotation": "ocr.jsonl", "max_dynamic_patch": 0}, "max_dynamic_patch"),
        ({"root": "images", "annotation": "ocr.jsonl", "weight": 2}, "unknown keys \\['weight'\\]"),
        ({"root": "images", "annotation": "ocr.jsonl", "relative_to": "here"}, "relative_to must be one of"),
    ],
)
def test_wrong_meta_files_fail_at_start_up(tmp_path, entry, message):
    write_dataset(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"ocr": {"relative_to": "meta", **entry}}))
    with pytest.raises(MetaError, match=message) as caught:
        load_mixture(tmp_path / "meta.json")
    assert "meta.json" in str(caught.value) and "'ocr'" in str(caught.value)


def test_unparseable_or_missing_meta(tmp_path):
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(MetaError, match="meta.json: cannot parse"):
        load_mixture(tmp_path / "meta.json")
    with pytest.raises(MetaError, match="does not exist"):
        load_mixture(tmp_path / "absent.json")
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(MetaError, match="non-empty object"):
        load_mixture(tmp_path / "empty.json")


def test_a_leading_system_turn_is_the_records_system_prompt_and_any_other_is_a_named_skip():
    system = {"from": "system", "value": "You are a careful OCR engine."}
    record = to_record({"conversations": [system, *turns(("read", "x"))]}, "f:1")
    assert record.system == "You are a careful OCR engine." and record.turns == (("read", "x"),)
    with pytest.raises(BadSample) as caught:
        to_record({"conversations": [*turns(("read", "x")), system, *turns(("more", "y"))]}, "f:2")
    assert caught.value.reason == "misplaced_system" and "f:2" in str(caught.value)
    with pytest.raises(BadSample) as caught:
        to_record({"conversations": [system]}, "f:3")
    assert caught.value.reason == "no_conversations"
