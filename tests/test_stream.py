"""Samples, packing, the stream's order, sharding, bad-sample skipping and exact resume."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from h2ovl.data.meta import load_mixture
from h2ovl.data.packing import best_fit_row, collate_rows, model_inputs
from h2ovl.data.records import BadSample
from h2ovl.data.samples import SampleBuilder
from h2ovl.data.sources import open_source
from h2ovl.data.stream import SampleStream, StreamState, StreamTracker, epoch_order
from h2ovl.data.template import ConversationEncoder
from h2ovl.errors import UserError
from tests.conftest import conversation, noise_image, write_jsonl


def make_mixture(tmp_path, n_good=24, bad=(), repeat=1.0):
    """Dataset "ocr" of images of varied sizes plus dataset "chat" (text only); `bad` lines planted in "ocr"."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    records = []
    for i in range(n_good):
        noise_image(30 + 37 * (i % 5), 20 + 23 * (i % 3), seed=i).save(images / f"{i}.png")
        records.append(conversation("<image>\nread " + "x" * (i % 7), f"answer {i}", f"{i}.png", id=f"ocr-{i}"))
    records += list(bad)
    write_jsonl(tmp_path / "ocr.jsonl", records)
    write_jsonl(
        tmp_path / "chat.jsonl", [conversation(f"question {i}", f"reply {i}", id=f"chat-{i}") for i in range(8)]
    )
    meta = {
        "ocr": {"root": "images", "annotation": "ocr.jsonl", "repeat_time": repeat, "relative_to": "meta"},
        "chat": {"root": "images", "annotation": "chat.jsonl", "relative_to": "meta"},
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return tmp_path / "meta.json"


def builder_for(meta, tiny, max_length=512, seed=0):
    model, tokenizer, preprocessor = tiny
    sources = [open_source(spec) for spec in load_mixture(meta)]
    return SampleBuilder(sources, preprocessor, ConversationEncoder(tokenizer, max_length), model.tokens_per_tile, seed)


def stream_for(meta, tiny, **kwargs):
    kwargs.setdefault("batch_size", 2)
    return SampleStream(builder_for(meta, tiny), pad_token_id=tiny[1].pad_token_id, **kwargs)


def ids_of(batches):
    return [i for batch in batches for i in batch["ids"]]


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


# -- samples ---------------------------------------------------------------------------------------------
def test_sample_tokens_match_tiles(tmp_path, tiny):
    builder = builder_for(make_mixture(tmp_path), tiny)
    sample = builder.build(0, 3)
    model = tiny[0]
    n_context = int((sample.input_ids == model.image_token_id).sum())
    assert n_context == sample.n_tiles * model.tokens_per_tile
    assert sample.tiles.dtype == torch.uint8


def test_missing_and_corrupt_images_are_bad_samples_naming_the_file(tmp_path, tiny):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    write_jsonl(
        tmp_path / "d.jsonl",
        [conversation("<image> q", "a", "absent.png"), conversation("<image> q", "a", "broken.png")],
    )
    builder = builder_for(tmp_path / "d.jsonl", tiny)
    builder.sources[0].root = tmp_path / "images"
    for index, name in ((0, "absent.png"), (1, "broken.png")):
        with pytest.raises(BadSample, match=name) as caught:
            builder.build(0, index)
        assert caught.value.reason == "image_error" and f"d.jsonl:{index + 1}" in str(caught.value)


def test_max_dynamic_patch_lowers_the_tile_budget(tmp_path, tiny):
    meta = make_mixture(tmp_path)
    entries = json.loads(meta.read_text())
    entries["ocr"]["max_dynamic_patch"] = 1
    meta.write_text(json.dumps(entries))
    capped = builder_for(meta, tiny).build(0, 4)  # a 178x20 image: several tiles by default
    default = builder_for(make_mixture(tmp_path), tiny).build(0, 4)
    assert capped.n_tiles == 1 < default.n_tiles


def test_augmentation_is_deterministic_per_seed(tmp_path, tiny):
    meta = make_mixture(tmp_path)
    entries = json.loads(meta.read_text())
    entries["ocr"]["data_augment"] = True
    meta.write_text(json.dumps(entries))
    first, again = builder_for(meta, tiny).build(0, 2), builder_for(meta, tiny).build(0, 2)
    plain = builder_for(make_mixture(tmp_path), tiny).build(0, 2)
    assert torch.equal(first.tiles, again.tiles) and not torch.equal(first.tiles, plain.tiles)


# -- packing ---------------------------------------------------------------------------------------------
def test_best_fit_row_respects_both_budgets_and_takes_the_oldest():
    lengths, tiles = [50, 300, 200, 120, 90], [1, 6, 2, 1, 8]
    chosen = best_fit_row(lengths, tiles, max_tokens=512, max_tiles=10)
    assert chosen[0] == 0
    assert sum(lengths[i] for i in chosen) <= 512 and sum(tiles[i] for i in chosen) <= 10
    assert chosen == [0, 1, 3]  # 300 first, then 200 breaks the tokens, 120 fits, 90 breaks the tiles
    assert best_fit_row([900, 10], [1, 1], 512, 10) == [0]  # an oversized oldest still goes, alone


@pytest.mark.parametrize("attention", ["sdpa", "eager", "flex_attention"])
def test_packed_rows_equal_separate_forwards(tmp_path, tiny, attention):
    from h2ovl.model.config import preset
    from h2ovl.model.h2ovl import H2OVL

    config = preset("tiny")
    config.llm = {**config.llm, "attn_implementation": attention}
    model = H2OVL.for_tokenizer(config, tiny[1]).eval()
    assert model.llm.config._attn_implementation == attention
    builder = builder_for(make_mixture(tmp_path), tiny)
    samples = [builder.build(0, i) for i in (1, 2, 3)] + [builder.build(1, 0)]
    packed = collate_rows([samples[:3], samples[3:]], pad_token_id=0, packed=True)
    assert packed["position_ids"][0, : samples[0].length].tolist() == list(range(samples[0].length))
    inputs = model_inputs(packed)
    assert inputs["attention_mask"] is None
    with torch.no_grad():
        logits = model(**{**inputs, "labels": None}).logits
        for number, sample in enumerate(samples):
            alone = collate_rows([[sample]], pad_token_id=0, packed=False)
            expected = model(**{**model_inputs(alone), "labels": None}).logits[0, : sample.length]
            row = 0 if number < 3 else 1
            got = logits[row][packed["sample_index"][row] == number]
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_packing_is_refused_where_transformers_would_let_packed_samples_attend_to_each_other(monkeypatch):
    import transformers.masking_utils

    from h2ovl.data import packing
    from h2ovl.data.batching import Batching
    from h2ovl.data.datamodule import H2OVLDataModule

    assert packing.packed_rows_isolated()  # the installed release keeps them apart
    packing.packed_rows_isolated.cache_clear()
    # As releases before packed-sequence detection behave: one causal mask over the whole row.
    monkeypatch.setattr(transformers.masking_utils, "find_packed_sequence_indices", lambda position_ids: None)
    try:
        with pytest.raises(UserError, match="does not keep packed samples apart"):
            H2OVLDataModule(batching=Batching(pack_tokens=512))
        H2OVLDataModule(batching=Batching(pack_tokens=None))  # padding needs no such thing
    finally:
        packing.packed_rows_isolated.cache_clear()


def test_padded_batch_masks_padding(tmp_path, tiny):
    builder = builder_for(make_mixture(tmp_path), tiny)
    batch = collate_rows([[builder.build(0, 0)], [builder.build(1, 1)]], pad_token_id=0, packed=False)
    assert batch["attention_mask"].sum(1).tolist() == [builder.build(0, 0).length, builder.build(1, 1).length]
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    assert batch["input_ids"].shape[1] % 8 == 0


# -- order and sharding ----------------------------------------------------------------------------------
def test_epoch_order_is_a_function_of_seed_and_epoch():
    sizes, repeats = [10, 7], [2.0, 0.5]
    first = epoch_order(sizes, repeats, seed=3, epoch=0)
    assert np.array_equal(first, epoch_order(sizes, repeats, seed=3, epoch=0))
    assert not np.array_equal(first, epoch_order(sizes, repeats, seed=3, epoch=1))
    assert not np.array_equal(first, epoch_order(sizes, repeats, seed=4, epoch=0))
    counts = Counter(map(tuple, first.tolist()))
    assert all(counts[(0, r)] == 2 for r in range(10))  # repeat_time 2.0: every record twice
    assert sum(1 for d, _ in counts if d == 1) == 4  # 0.5 of 7, rounded: distinct records
    assert len(first) == 24


def test_ranks_share_an_epoch_without_overlap(tmp_path, tiny):
    meta = make_mixture(tmp_path)
    seen = []
    for rank in range(3):
        stream = stream_for(meta, tiny, rank=rank, world_size=3)
        seen.append([stream._entry(p)[:2] for p in range(stream.rank_size)])
    flat = [entry for shard in seen for entry in shard]
    order = epoch_order(stream.sizes, stream.repeat_times, 0, 0)
    # 32 entries over 3 ranks: 11 each, the last rank wrapping once to the epoch's first entry.
    assert len(flat) == 33 and set(flat) == set(map(tuple, order.tolist()))
    assert not set(seen[0]) & set(seen[1]) and not set(seen[1]) & set(seen[2])
    assert seen[2][-1] == tuple(order[0])


# -- bad samples -----------------------------------------------------------------------------------------
BAD = [
    '{"id": "broken", "conversations": [',
    json.dumps({"id": "none"}),
    json.dumps(conversation("<image> q", "a", "missing.png")),
]


def test_bad_samples_are_skipped_and_counted_per_dataset(tmp_path, tiny, caplog):
    stream = stream_for(make_mixture(tmp_path, bad=BAD), tiny, steps_per_epoch=1)
    tracker = StreamTracker(1, 1)
    iterator = iter(stream)
    for _ in range(-(-stream.rank_size // 2)):
        batch = next(iterator)
        tracker.observe(batch)
        assert len(batch["ids"]) == 2  # batches stay full: the next record replaces a bad one
    assert tracker.report(0) == {"ocr": {"image_error": 1, "malformed_json": 1, "no_conversations": 1}}
    assert "ocr.jsonl:25" in caplog.text


def test_on_bad_sample_raise_names_file_and_line(tmp_path, tiny):
    stream = stream_for(make_mixture(tmp_path, n_good=0, bad=BAD[:1]), tiny, on_bad_sample="raise")
    with pytest.raises(BadSample, match=r"ocr\.jsonl:1"):
        take(iter(stream), 8)


def test_a_mixture_without_any_valid_sample_stops(tmp_path, tiny):
    meta = make_mixture(tmp_path, n_good=0, bad=BAD)
    entries = json.loads(meta.read_text())
    del entries["chat"]
    meta.write_text(json.dumps(entries))
    with pytest.raises(UserError, match="no valid sample"):
        next(iter(stream_for(meta, tiny)))


# -- resume ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("pack_tokens", "group_by_length"), [(None, None), (384, None), (None, 6)])
def test_resume_continues_exactly(tmp_path, tiny, pack_tokens, group_by_length):
    meta = make_mixture(tmp_path, bad=BAD)
    kwargs = dict(pack_tokens=pack_tokens, pack_buffer=6, seed=5, group_by_length=group_by_length)
    uninterrupted = ids_of(take(iter(stream_for(meta, tiny, **kwargs)), 30))
    assert len(uninterrupted) > len(set(uninterrupted)) >= 32  # crossed into the next epoch

    tracker = StreamTracker(1, 1)
    for batch in take(iter(stream_for(meta, tiny, **kwargs)), 11):
        tracker.observe(batch)
    saved = json.loads(json.dumps(tracker.state_dict()))  # what a checkpoint holds
    resumed_tracker = StreamTracker(1, 1)
    resumed_tracker.load_state_dict(saved)
    resumed = stream_for(meta, tiny, state=resumed_tracker.state, **kwargs)
    first_part = ids_of(take(iter(stream_for(meta, tiny, **kwargs)), 11))
    assert first_part + ids_of(take(iter(resumed), 19)) == uninterrupted


def test_resume_with_loader_workers_keeps_the_batch_order(tmp_path, tiny):
    meta = make_mixture(tmp_path)
    kwargs = dict(pack_tokens=384, pack_buffer=4)

    def loader(state=None):
        stream = stream_for(meta, tiny, state=state or StreamState(2, 1), **kwargs)
        return iter(DataLoader(stream, batch_size=None, num_workers=2))

    uninterrupted = ids_of(take(loader(), 9))
    tracker = StreamTracker(2, 1)
    consumed = take(loader(), 5)  # odd: the resumed run must start on the other worker
    for batch in consumed:
        tracker.observe(batch)
    assert ids_of(consumed) + ids_of(take(loader(tracker.state), 4)) == uninterrupted


def test_resume_refuses_a_different_worker_count(tmp_path, tiny):
    stream = stream_for(make_mixture(tmp_path), tiny, state=StreamState(num_workers=3, world_size=1))
    with pytest.raises(ValueError, match="same num_workers"):
        next(iter(stream))


def test_length_grouped_batches_take_the_oldest_and_its_nearest_lengths():
    from h2ovl.data.packing import length_grouped_batch

    assert length_grouped_batch([50, 10, 48, 52, 11, 90], 3) == [0, 2, 3]
    assert length_grouped_batch([10, 50, 11, 12, 90], 2) == [0, 2]  # ties in spread: the older window
    assert length_grouped_batch([5, 6], 4) == [0, 1]


def test_length_grouping_pads_less_and_serves_every_sample(tmp_path, tiny):
    meta = make_mixture(tmp_path, n_good=24)

    def run(group):
        batches = take(iter(stream_for(meta, tiny, batch_size=4, group_by_length=group)), 8)
        real = sum(int(b["attention_mask"].sum()) for b in batches)
        width = sum(b["input_ids"].numel() for b in batches)
        return 1 - real / width, batches

    (grouped, batches), (in_order, _) = run(16), run(None)
    assert grouped < in_order
    # Served: every position read so far but those still buffered, each once.
    last = batches[-1]["stream"]
    read = ids_of(take(iter(stream_for(meta, tiny, batch_size=1)), last["next"]))
    expected = [sample for position, sample in enumerate(read) if position not in set(last["pending"])]
    assert sorted(ids_of(batches)) == sorted(expected)


def test_persistent_workers_restart_each_epoch_from_the_consumed_position(tmp_path, tiny):
    """Workers kept across epochs: when an epoch's iterator is dropped with batches prefetched, the next
    iterator makes them again (read from shared memory), so the batches equal an uninterrupted run's."""
    meta = make_mixture(tmp_path)
    kwargs = dict(pack_tokens=384, pack_buffer=4)
    uninterrupted = ids_of(
        take(
            iter(DataLoader(stream_for(meta, tiny, state=StreamState(2, 1), **kwargs), batch_size=None, num_workers=2)),
            12,
        )
    )

    tracker = StreamTracker(2, 1)
    shared = tracker.share(capacity=4)
    loader = DataLoader(
        stream_for(meta, tiny, state=tracker.state, shared=shared, **kwargs),
        batch_size=None,
        num_workers=2,
        persistent_workers=True,
        prefetch_factor=3,
    )
    served = []
    for epoch_batches in (5, 4, 3):  # Lightning drops each epoch's iterator after len() batches
        for batch in take(iter(loader), epoch_batches):
            tracker.observe(batch)
            served.append(batch)
    assert ids_of(served) == uninterrupted
