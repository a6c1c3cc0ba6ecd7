"""Training data as researchers have it: Hugging Face datasets (save_to_disk folders and parquet shards, in
the InternVL/LLaVA, chat-messages and the_cauldron schemas) and WebDataset shards, each read record by
record with its images, mixed with weights, skipped and counted when bad, resumed exactly mid-epoch, and
trained through `h2ovl fit`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_stream import builder_for, ids_of, take

from h2ovl.data.meta import MetaError, load_mixture
from h2ovl.data.records import BadSample
from h2ovl.data.sources import open_source
from h2ovl.data.stream import SampleStream, StreamTracker
from h2ovl.preprocessing.image_io import open_image

from support.training_files import conversation_rows, write_hf_dataset, write_webdataset


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """`datasets` converts parquet into its Arrow cache: here, not in the user's home."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def _meta(tmp_path: Path, **datasets_: dict) -> Path:
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({name: {"relative_to": "meta", **entry} for name, entry in datasets_.items()}))
    return meta


FORMATS = {
    "hf-save_to_disk-conversations": lambda tmp: {"hf_dataset": str(write_hf_dataset(tmp / "hf", "conversations"))},
    "hf-parquet-messages": lambda tmp: {"hf_dataset": str(write_hf_dataset(tmp / "hf", "messages", layout="parquet"))},
    "hf-parquet-glob-cauldron": lambda tmp: {
        "hf_dataset": str(write_hf_dataset(tmp / "hf", "texts", layout="parquet") / "train-*.parquet")
    },
    "webdataset": lambda tmp: {"webdataset": write_webdataset(tmp / "wds")},
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_every_record_with_its_images_and_turns(tmp_path: Path, fmt: str):
    (spec,) = load_mixture(_meta(tmp_path, data=FORMATS[fmt](tmp_path)))
    source = open_source(spec)
    rows = conversation_rows(12)
    assert len(source) == 12
    for index, row in enumerate(rows):
        record, images = source.load(index)
        expected = [t for t in row["conversations"] if t["from"] != "system"]
        assert [answer for _, answer in record.turns] == [t["value"] for t in expected[1::2]]
        n_images = 2 if fmt == "webdataset" and index % 5 == 4 else 1
        assert len(images) == len(record.images) == n_images
        assert open_image(images[0]).size == open_image(row["image"]["bytes"]).size  # its own image, first
        keeps_system = fmt.endswith("conversations") or fmt == "webdataset"  # the schemas that carry one
        assert record.system == ("You read documents." if keeps_system and index % 3 == 2 else "")


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_mixes_with_weights_and_resumes_exactly_mid_epoch(tmp_path: Path, tiny, fmt: str):
    from conftest import conversation, noise_image, write_jsonl

    (tmp_path / "images").mkdir()
    noise_image(50, 30).save(tmp_path / "images" / "a.png")
    write_jsonl(
        tmp_path / "chat.jsonl", [conversation(f"<image>\nq{i}", f"a{i}", "a.png", id=f"chat-{i}") for i in range(6)]
    )
    meta = _meta(
        tmp_path,
        data={**FORMATS[fmt](tmp_path), "repeat_time": 2.0},
        chat={"root": "images", "annotation": "chat.jsonl"},
    )
    builder = builder_for(meta, tiny)
    kwargs = dict(batch_size=2, pad_token_id=tiny[1].pad_token_id, pack_tokens=512, pack_buffer=4, seed=3)
    stream = SampleStream(builder, **kwargs)
    assert stream.epoch_size == 2 * 12 + 6  # the weight repeats the dataset
    uninterrupted = ids_of(take(iter(SampleStream(builder, **kwargs)), 24))
    assert len(set(uninterrupted)) == 18  # all 12 + 6 records, none skipped

    tracker = StreamTracker(1, 1)
    consumed = take(iter(SampleStream(builder, **kwargs)), 9)
    for batch in consumed:
        tracker.observe(batch)
    saved = StreamTracker(1, 1)
    saved.load_state_dict(json.loads(json.dumps(tracker.state_dict())))  # through a checkpoint's JSON
    resumed = take(iter(SampleStream(builder_for(meta, tiny), state=saved.state, **kwargs)), 15)
    assert ids_of(consumed) + ids_of(resumed) == uninterrupted


def test_a_bad_row_is_a_counted_skip_naming_the_row(tmp_path: Path):
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "bad.tar")) as sink:
        sink.write(
            {
                "__key__": "good",
                "json": {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
            }
        )
        sink.write({"__key__": "nojson", "png": b"\x89PNG"})
        sink.write({"__key__": "broken", "json": b"{not json"})
    (spec,) = load_mixture(_meta(tmp_path, data={"webdataset": str(tmp_path / "bad.tar")}))
    source = open_source(spec)
    assert source.load(0)[0].turns == (("q", "a"),)
    for index, reason, key in ((1, "no_conversations", "nojson"), (2, "malformed_json", "broken")):
        with pytest.raises(BadSample) as caught:
            source.load(index)
        assert caught.value.reason == reason and f"bad.tar:{key}" in str(caught.value)


def test_columns_map_a_datasets_own_names_and_splits_must_be_named(tmp_path: Path):
    from datasets import Dataset, DatasetDict

    rows = [{"dialog": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]
    DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(MetaError, match=r"holds the splits \['test', 'train'\]: set 'split'"):
        open_source(load_mixture(_meta(tmp_path, data={"hf_dataset": str(tmp_path / "dd")}))[0])
    source = open_source(load_mixture(_meta(tmp_path, data={"hf_dataset": str(tmp_path / "dd"), "split": "train"}))[0])
    with pytest.raises(BadSample, match="map the dataset's own names with 'columns'"):
        source.load(0)
    mapped = load_mixture(
        _meta(
            tmp_path,
            data={"hf_dataset": str(tmp_path / "dd"), "split": "train", "columns": {"conversations": "dialog"}},
        )
    )
    assert open_source(mapped[0]).load(0)[0].turns == (("q", "a"),)
    with pytest.raises(MetaError, match="names its records twice"):
        load_mixture(_meta(tmp_path, data={"hf_dataset": str(tmp_path / "dd"), "webdataset": "x.tar"}))


def test_a_fit_trains_on_every_format_at_once_from_a_stock_internvl_style_meta_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Parquet shards, a save_to_disk folder, WebDataset shards and an InternVL jsonl (root relative to the
    working directory, one absolute image path), with weights, through `h2ovl fit`."""
    from h2ovl.cli import main

    from conftest import conversation, noise_image, write_jsonl
    from training_runs import last_checkpoint, tiny_run_config, write_config

    (tmp_path / "playground" / "data").mkdir(parents=True)
    noise_image(50, 30).save(tmp_path / "playground" / "data" / "a.png")
    noise_image(40, 60).save(tmp_path / "elsewhere.png")
    write_jsonl(
        tmp_path / "playground" / "chat.jsonl",
        [
            conversation(
                f"<image>\nq{i}", f"a{i}", "a.png" if i % 2 else str(tmp_path / "elsewhere.png"), id=f"chat-{i}"
            )
            for i in range(4)
        ],
    )
    meta = tmp_path / "meta.json"
    meta.write_text(
        json.dumps(
            {
                "parquet": {
                    "hf_dataset": str(write_hf_dataset(tmp_path / "pq", "messages", layout="parquet")),
                    "repeat_time": 0.5,
                },
                "disk": {"hf_dataset": str(write_hf_dataset(tmp_path / "disk", "texts")), "repeat_time": 0.5},
                "shards": {"webdataset": write_webdataset(tmp_path / "wds")},
                "internvl": {
                    "root": "playground/data/",
                    "annotation": "playground/chat.jsonl",
                    "data_augment": False,
                    "repeat_time": 2,
                    "length": 4,
                },
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    config = tiny_run_config(tmp_path, "formats", 3, train=str(meta), val=None)
    assert main(["fit", "--config", str(write_config(tmp_path / "run.yaml", config))]) == 0
    checkpoint = last_checkpoint(tmp_path, "formats")
    assert checkpoint["global_step"] == 3
    stream = checkpoint["H2OVLDataModule"]["per_rank"][0]
    assert (
        sum(worker["next"] for worker in stream["stream"]["workers"].values()) >= 6
    )  # 3 steps of 2 samples were drawn
    assert all(not counts for counts in stream["skipped"].values())  # every record drawn built


@pytest.mark.parametrize(("preset", "preprocessor"), [("h2ovl-0.8b", "DynamicResolution"), ("h2ovl-2b", "MSAC")])
def test_data_inspect_shows_the_real_presets_tokens_and_tiles_from_their_tokenizer_alone(
    tmp_path: Path, capsys, preset, preprocessor
):
    """The presets' own tiling at 448 px (dynamic resolution for the 0.8B, MSAC for the 2B), 256 tokens a tile
    after pixel shuffle. Only the tokenizer is loaded: the model is never built."""
    import h2ovl.preprocessing
    from h2ovl.cli import main

    from support.sentencepiece_tokenizer import write_sentencepiece_tokenizer

    tiler = getattr(h2ovl.preprocessing, preprocessor)(tile_size=448, max_tiles=6)
    counts = [tiler(open_image(row["image"]["bytes"])).tiles.shape[0] for row in conversation_rows(12)]
    tiles = {str(k): counts.count(k) for k in sorted(set(counts))}

    write_sentencepiece_tokenizer(tmp_path / "tokenizer")
    meta = _meta(tmp_path, data={"hf_dataset": str(write_hf_dataset(tmp_path / "hf", "conversations"))})
    assert (
        main(
            [
                "data",
                "inspect",
                str(meta),
                "--preset",
                preset,
                "--tokenizer",
                str(tmp_path / "tokenizer"),
                "--max-length",
                "8192",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["data"]
    assert summary["built"] == 12 and summary["skipped"] == {} and summary["tiles"] == tiles
    assert summary["mean_tokens"] > 256 * sum(counts) / 12 and sum(summary["tokens"].values()) == 12
    assert main(["data", "inspect", str(meta), "--preset", preset]) == 2
    assert "needs its tokenizer: pass --tokenizer" in capsys.readouterr().err
