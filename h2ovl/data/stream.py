"""The training stream: deterministic order per (seed, epoch), sharding across ranks and loader
workers, packing, bad-sample skipping, and an exact position for resuming.

Why not a `DistributedSampler`: packing and skipped samples make the number of samples per batch
vary, so a batch is assembled in the worker and the position in the data has to be tracked in
samples, per worker. The stream is endless (epoch e+1 follows e with a new permutation, so every rank
always has a next batch and DDP never waits on a rank that ran dry); `__len__` tells Lightning where
its epochs end.

Position bookkeeping. Each rank sees the epoch permutation's entries rank, rank+world, ...; loader
worker `s` of `W` takes every W-th of those. A worker's state is the next position it will read and the
positions it read but has not emitted yet (the packing buffer). Every batch carries its worker's state;
`StreamTracker` (main process) keeps the state of the last *consumed* batch of each worker, which is
what a checkpoint saves. Worker roles rotate on resume so batches keep their uninterrupted order.
Persistent loader workers (kept across Lightning's epochs) read that consumed state from shared memory
(`SharedPositions`) whenever their iterator restarts, so the batches they had prefetched when an epoch
ended are made again, not lost: an epoch boundary is a resume.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from h2ovl.data.meta import MetaError
from h2ovl.data.packing import best_fit_row, collate_rows, length_grouped_batch
from h2ovl.data.records import BadSample
from h2ovl.data.samples import Sample, SampleBuilder
from h2ovl.errors import SettingError

log = logging.getLogger(__name__)

#: How many failures per dataset a worker describes in the log before only counting.
_LOGGED_FAILURES = 3


def epoch_order(sizes: list[int], repeat_times: list[float], seed: int, epoch: int) -> np.ndarray:
    """[n, 2] (dataset, record) pairs for one epoch: each dataset repeated floor(r) times plus a fresh
    random fraction (r mod 1) of its records, all shuffled together; the same for the same seed and epoch."""
    rng = np.random.default_rng([seed, epoch])
    parts = []
    for dataset, (size, repeat) in enumerate(zip(sizes, repeat_times)):
        whole, fraction = int(repeat), repeat - int(repeat)
        records = [np.tile(np.arange(size), whole)]
        extra = int(round(size * fraction))
        if extra:
            records.append(np.sort(rng.choice(size, size=extra, replace=False)))
        records = np.concatenate(records)
        parts.append(np.stack([np.full_like(records, dataset), records], axis=1))
    order = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
    return order[rng.permutation(len(order))]


def epoch_length(sizes: list[int], repeat_times: list[float]) -> int:
    return sum(int(r) * n + int(round(n * (r - int(r)))) for n, r in zip(sizes, repeat_times))


@dataclass
class StreamState:
    """Where every loader worker of one rank stands; what a checkpoint saves."""

    num_workers: int
    world_size: int
    batches: int = 0
    workers: dict[int, dict[str, Any]] = field(default_factory=dict)
    """logical worker -> {"next": position, "pending": [positions read, not yet emitted]}"""

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "world_size": self.world_size,
            "batches": self.batches,
            "workers": self.workers,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> StreamState:
        workers = {
            int(k): {"next": int(v["next"]), "pending": [int(p) for p in v["pending"]]}
            for k, v in state["workers"].items()
        }
        return cls(state["num_workers"], state["world_size"], state["batches"], workers)


class SharedPositions:
    """The consumed `StreamState` of one rank in shared memory: written by the main process as batches are
    consumed, read by (persistent) loader workers when their iterator restarts. One int64 row per logical
    worker: next position, pending count, the pending positions; and the count of consumed batches."""

    def __init__(self, num_workers: int, world_size: int, capacity: int) -> None:
        self.num_workers, self.world_size, self.capacity = num_workers, world_size, capacity
        self.rows = torch.zeros((num_workers, 2 + capacity), dtype=torch.long).share_memory_()
        self.batches = torch.zeros(1, dtype=torch.long).share_memory_()

    def write(self, state: StreamState) -> None:
        self.batches[0] = state.batches
        for worker, position in state.workers.items():
            pending = position["pending"]
            if len(pending) > self.capacity:
                raise RuntimeError(f"{len(pending)} pending positions exceed the shared capacity {self.capacity}")
            row = self.rows[worker]
            row[0], row[1] = position["next"], len(pending)
            row[2 : 2 + len(pending)] = torch.tensor(pending, dtype=torch.long)

    def read(self) -> StreamState:
        state = StreamState(self.num_workers, self.world_size, int(self.batches[0]))
        for worker in range(self.num_workers):
            row = self.rows[worker].tolist()
            if row[0] or row[1]:
                state.workers[worker] = {"next": row[0], "pending": row[2 : 2 + row[1]]}
        return state


class SampleStream(IterableDataset):
    """Endless batches for one rank.

    Args:
        builder: record -> `Sample`.
        batch_size: rows per batch (samples, or packed sequences when `pack_tokens` is set).
        pack_tokens: pack samples into rows of at most this many tokens (None: one sample per row).
        pack_tiles: at most this many tiles per packed row (bounds the ViT's memory).
        pack_buffer: samples considered at once when filling a row (more: fuller rows).
        group_by_length: padded batches (no packing) drawn from a buffer of this many samples, each batch
            the oldest sample and the others closest to it in length (less padding); None: in order.
        seed, rank, world_size: the order and this rank's share of it.
        on_bad_sample: "skip" (count, log the first few, take the next record) or "raise".
        state: where to resume (`StreamState`), None to start at the beginning.
        shared: the consumed state in shared memory, read by every new iterator (persistent workers).
        steps_per_epoch: `len()` of the stream, i.e. the batches of one Lightning epoch.
    """

    def __init__(
        self,
        builder: SampleBuilder,
        batch_size: int,
        pad_token_id: int,
        pack_tokens: int | None = None,
        pack_tiles: int = 64,
        pack_buffer: int = 64,
        group_by_length: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        on_bad_sample: str = "skip",
        state: StreamState | None = None,
        steps_per_epoch: int | None = None,
        shared: SharedPositions | None = None,
    ) -> None:
        if on_bad_sample not in ("skip", "raise"):
            raise SettingError(f"on_bad_sample must be 'skip' or 'raise', got {on_bad_sample!r}")
        if not 0 <= rank < world_size:
            raise SettingError(f"rank {rank} is outside world size {world_size}")
        self.builder = builder
        self.batch_size = batch_size
        self.pad_token_id = pad_token_id
        self.pack_tokens = pack_tokens
        self.pack_tiles = pack_tiles
        self.pack_buffer = max(pack_buffer, batch_size) if pack_tokens else 0
        if group_by_length is not None and pack_tokens:
            raise SettingError(
                "data.batching.group_by_length groups padded batches; packed rows (data.batching.pack_tokens) need no grouping"
            )
        self.group_by_length = max(group_by_length, batch_size) if group_by_length else None
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.on_bad_sample = on_bad_sample
        self.state = state
        self.shared = shared
        self.steps_per_epoch = steps_per_epoch
        self.sizes = [len(source) for source in builder.sources]
        self.repeat_times = [source.spec.repeat_time for source in builder.sources]
        self.names = [source.spec.name for source in builder.sources]
        self.epoch_size = epoch_length(self.sizes, self.repeat_times)
        if self.epoch_size == 0:
            raise SettingError(f"the mixture {self.names} holds no records")
        self.rank_size = math.ceil(self.epoch_size / world_size)
        self._order_epoch, self._order = -1, None

    def __len__(self) -> int:
        if self.steps_per_epoch is None:
            raise TypeError("this stream is endless; set steps_per_epoch to give it a length")
        return self.steps_per_epoch

    # -- order ---------------------------------------------------------------------------------------
    def _entry(self, rank_position: int) -> tuple[int, int, int]:
        """(dataset, record, epoch) at a position of this rank's endless sequence."""
        epoch, offset = divmod(rank_position, self.rank_size)
        if epoch != self._order_epoch:
            self._order = epoch_order(self.sizes, self.repeat_times, self.seed, epoch)
            self._order_epoch = epoch
        # Ranks past the end wrap to the epoch's start (DistributedSampler's padding).
        dataset, record = self._order[(self.rank + self.world_size * offset) % self.epoch_size]
        return int(dataset), int(record), epoch

    # -- iteration -----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        state = (
            self.shared.read() if self.shared is not None else (self.state or StreamState(num_workers, self.world_size))
        )
        if (state.num_workers, state.world_size) != (num_workers, self.world_size):
            raise SettingError(
                f"cannot resume a data position saved with {state.num_workers} loader workers x {state.world_size} ranks "
                f"on {num_workers} x {self.world_size}; resume with the same num_workers and devices (h2ovl fit re-derives the "
                "position for another shape: h2ovl.data.elastic)"
            )
        logical = (worker + state.batches) % num_workers
        saved = state.workers.get(logical, {"next": 0, "pending": []})
        return self._batches(logical, num_workers, saved["next"], list(saved["pending"]))

    def _batches(self, logical: int, num_workers: int, next_position: int, pending: list[int]) -> Iterator[dict]:
        skipped: Counter[str] = Counter()
        logged: Counter[str] = Counter()
        buffer: list[tuple[int, Sample]] = []  # (position, sample)
        consecutive_failures = 0

        def build(position: int) -> Sample | None:
            nonlocal consecutive_failures
            dataset, record, epoch = self._entry(position * num_workers + logical)
            try:
                sample = self.builder.build(dataset, record, epoch)
            except BadSample as error:
                if self.on_bad_sample == "raise":
                    raise
                name = self.names[dataset]
                skipped[f"{name}/{error.reason}"] += 1
                if logged[name] < _LOGGED_FAILURES:
                    logged[name] += 1
                    log.warning("skipping a bad sample (counted per dataset): %s", error)
                consecutive_failures += 1
                if consecutive_failures > self.rank_size:
                    raise MetaError(f"no valid sample in a whole epoch of {self.names}; last error: {error}") from error
                return None
            consecutive_failures = 0
            return sample

        for position in pending:  # rebuilt exactly as before the interruption
            sample = build(position)
            if sample is not None:
                buffer.append((position, sample))
        skipped.clear()  # these were counted before the interruption

        target = self.pack_buffer if self.pack_tokens else (self.group_by_length or self.batch_size)
        while True:
            rows: list[list[Sample]] = []
            while len(rows) < self.batch_size:
                while len(buffer) < target:
                    sample = build(next_position)
                    if sample is not None:
                        buffer.append((next_position, sample))
                    next_position += 1
                if self.pack_tokens:
                    chosen = best_fit_row(
                        [s.length for _, s in buffer], [s.n_tiles for _, s in buffer], self.pack_tokens, self.pack_tiles
                    )
                    rows.append([buffer[i][1] for i in chosen])
                    taken = set(chosen)
                    buffer = [item for i, item in enumerate(buffer) if i not in taken]
                elif self.group_by_length:
                    chosen = length_grouped_batch([s.length for _, s in buffer], self.batch_size)
                    rows.extend([buffer[i][1]] for i in chosen)
                    taken = set(chosen)
                    buffer = [item for i, item in enumerate(buffer) if i not in taken]
                else:
                    rows.extend([sample] for _, sample in buffer)
                    buffer = []
            batch = collate_rows(rows, self.pad_token_id, packed=bool(self.pack_tokens))
            batch["stream"] = {
                "worker": logical,
                "next": next_position,
                "pending": [position for position, _ in buffer],
                "data_epoch": (next_position * num_workers + logical) // self.rank_size,
                "skipped": dict(skipped),
            }
            skipped.clear()
            yield batch


class StreamTracker:
    """Main-process record of consumed batches: the resume state and the bad-sample report."""

    def __init__(self, num_workers: int, world_size: int) -> None:
        self.state = StreamState(max(num_workers, 1), world_size)
        self.shared: SharedPositions | None = None
        self.skipped: dict[int, Counter[str]] = defaultdict(Counter)
        """data epoch -> "dataset/reason" -> count"""

    def observe(self, batch: dict) -> None:
        info = batch["stream"]
        self.state.batches += 1
        self.state.workers[info["worker"]] = {"next": info["next"], "pending": info["pending"]}
        if self.shared is not None:
            self.shared.write(self.state)
        self.skipped[info["data_epoch"]].update(info["skipped"])

    def report(self, data_epoch: int | None = None) -> dict[str, dict[str, int]]:
        """{dataset: {reason: count}} for one data epoch, or for all of them."""
        counts: Counter[str] = Counter()
        for epoch, epoch_counts in self.skipped.items():
            if data_epoch is None or epoch == data_epoch:
                counts.update(epoch_counts)
        report: dict[str, dict[str, int]] = defaultdict(dict)
        for key, count in sorted(counts.items()):
            dataset, reason = key.rsplit("/", 1)
            report[dataset][reason] = count
        return dict(report)

    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.state.to_dict(), "skipped": {str(e): dict(c) for e, c in self.skipped.items()}}

    def share(self, capacity: int) -> SharedPositions:
        """The consumed state in shared memory, for loader workers that outlive an iterator."""
        self.shared = SharedPositions(self.state.num_workers, self.state.world_size, capacity)
        self.shared.write(self.state)
        return self.shared

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = StreamState.from_dict(state["stream"])
        if self.shared is not None:
            self.shared.write(self.state)
        self.skipped = defaultdict(Counter, {int(e): Counter(c) for e, c in state["skipped"].items()})
