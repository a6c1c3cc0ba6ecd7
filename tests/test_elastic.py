"""Resuming on another number of devices or loader workers: the data position carries over as the prefix
of the global order every saved rank had consumed; exact when the ranks had consumed alike (nothing
repeated, nothing lost), and otherwise nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_stream import ids_of, make_mixture, stream_for, take

from h2ovl.data.elastic import consumed_prefix, rederive
from h2ovl.data.stream import StreamTracker


def _consume(meta, tiny, rank: int, world: int, batches: int, **kwargs) -> tuple[list[str], dict]:
    tracker = StreamTracker(1, world)
    served = take(iter(stream_for(meta, tiny, rank=rank, world_size=world, state=tracker.state, **kwargs)), batches)
    for batch in served:
        tracker.observe(batch)
    return ids_of(served), json.loads(json.dumps(tracker.state_dict()))  # through a checkpoint's JSON


def _global_order(meta, tiny, n: int) -> list[str]:
    return ids_of(take(iter(stream_for(meta, tiny, batch_size=1)), n))


@pytest.mark.parametrize(("saved_world", "new_world"), [(2, 1), (1, 2), (2, 3)])
def test_a_resume_on_another_device_count_continues_the_global_order_exactly(tmp_path, tiny, saved_world, new_world):
    meta = make_mixture(tmp_path)  # 32 records an epoch
    epoch_size = 32
    before, states = [], []
    for rank in range(saved_world):  # every rank consumed 3 batches of 2: the counts divide
        served, state = _consume(meta, tiny, rank, saved_world, 3)
        before += served
        states.append(state)
    start = 6 * saved_world
    assert consumed_prefix(states, epoch_size) == (0, start, 0)
    order = _global_order(meta, tiny, 64)
    assert sorted(before) == sorted(order[:start])
    after = []
    for rank in range(new_world):
        tracker = StreamTracker(1, new_world)
        tracker.load_state_dict(rederive(states, rank, new_world, 1, epoch_size))
        after += ids_of(take(iter(stream_for(meta, tiny, rank=rank, world_size=new_world, state=tracker.state)), 2))
    assert sorted(after) == sorted(order[start : start + 4 * new_world])  # the next entries, each once


def test_uneven_ranks_repeat_some_samples_and_lose_none(tmp_path, tiny, caplog):
    meta = make_mixture(tmp_path)
    served0, state0 = _consume(meta, tiny, 0, 2, 4)
    served1, state1 = _consume(meta, tiny, 1, 2, 2)  # rank one was slower
    epoch, done, beyond = consumed_prefix([state0, state1], 32)
    assert (epoch, done, beyond) == (0, 8, 8)
    tracker = StreamTracker(1, 1)
    with caplog.at_level("WARNING"):
        tracker.load_state_dict(rederive([state0, state1], 0, 1, 1, 32))
    assert "8 samples some ranks had already consumed are read again" in caplog.text
    after = ids_of(take(iter(stream_for(meta, tiny, state=tracker.state)), 12))
    order = _global_order(meta, tiny, 64)
    assert after == order[8:32]  # from the common prefix on: nothing lost
    assert not set(order[:8]) - set(served0 + served1)


def test_a_resume_with_other_loader_workers_continues_exactly(tmp_path, tiny):
    from torch.utils.data import DataLoader

    meta = make_mixture(tmp_path)
    served, state = _consume(meta, tiny, 0, 1, 5)
    tracker = StreamTracker(2, 1)
    tracker.load_state_dict(rederive([state], 0, 1, 2, 32))
    loader = DataLoader(stream_for(meta, tiny, state=tracker.state), batch_size=None, num_workers=2)
    after = ids_of(take(iter(loader), 4))
    order = _global_order(meta, tiny, 64)
    assert sorted(served + after) == sorted(order[:18])


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)])
def test_h2ovl_fit_resumes_on_another_process_count_as_if_uninterrupted(tmp_path: Path, first: int, then: int):
    """Through the real CLI: `first` CPU processes train 2 of 4 steps; the checkpoint resumes on `then`
    processes (the same global batch, accumulated differently), ending where an uninterrupted run ends."""
    from test_distributed import _assert_same_weights, _fit, _uneven_dataset

    from training_runs import last_checkpoint

    def devices(n: int) -> tuple[str, ...]:
        return ("--trainer.devices", str(n), *(("--trainer.strategy", "ddp") if n > 1 else ()))

    data = _uneven_dataset(tmp_path)
    _fit(tmp_path, "straight", data, "--trainer.devices", "1")
    _fit(
        tmp_path,
        "elastic",
        data,
        *devices(first),
        "--trainer.callbacks+=support.faults.StopAt",
        "--trainer.callbacks.step",
        "2",
    )
    assert last_checkpoint(tmp_path, "elastic")["global_step"] == 2
    _fit(tmp_path, "elastic", data, *devices(then), "--ckpt_path", "last")
    straight, resumed = last_checkpoint(tmp_path, "straight"), last_checkpoint(tmp_path, "elastic")
    assert resumed["global_step"] == straight["global_step"] == 4
    assert [s["stream"]["world_size"] for s in resumed["H2OVLDataModule"]["per_rank"]] == [then] * then
    _assert_same_weights(straight["state_dict"], resumed["state_dict"])
