"""Resuming on another number of devices or loader workers: the data position re-derived from the samples
every saved rank had consumed.

A checkpoint holds each rank's position as its loader workers' next and pending positions. Rank r of N
reads global entries r, r+N, r+2N, ... of each epoch's order, so the entries before N*o are consumed by
all ranks when every rank consumed at least o of its own; that prefix of the global order is what carries
over. Each rank of the new run (M ranks, W workers) starts at its first entry at or after it.

Exact when the saved ranks had consumed the same count (the usual case without packing or skipped
samples: the global batch is the same on every rank): nothing is repeated or lost. Otherwise the entries a
faster rank had consumed past the common prefix (at most N times the ranks' spread) are read again:
nothing is lost, a few samples are seen twice; the log says how many.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from h2ovl.data.stream import StreamState

log = logging.getLogger(__name__)


def _first_unconsumed(state: dict[str, Any]) -> int:
    """The rank position before which every position of this rank was consumed."""
    workers = state["workers"]
    firsts = []
    for worker in range(state["num_workers"]):
        position = workers.get(worker, workers.get(str(worker)))
        if position is None:  # this worker had emitted nothing: its first position is its own index
            firsts.append(worker)
            continue
        local = min(position["pending"]) if position["pending"] else position["next"]
        firsts.append(local * state["num_workers"] + worker)
    return min(firsts)


def consumed_prefix(per_rank: list[dict[str, Any]], epoch_size: int) -> tuple[int, int, int]:
    """(epoch, entries of that epoch's order consumed by every rank, the most entries beyond them some rank had)."""
    world = len(per_rank)
    rank_size = math.ceil(epoch_size / world)
    firsts = [_first_unconsumed(state["stream"]) for state in per_rank]
    common = min(firsts)
    epoch, offset = divmod(common, rank_size)
    done = min(world * offset, epoch_size)
    beyond = world * (max(firsts) - common)
    return (epoch + 1, 0, beyond) if done >= epoch_size else (epoch, done, beyond)


def rederive(
    per_rank: list[dict[str, Any]], rank: int, world: int, num_workers: int, epoch_size: int
) -> dict[str, Any]:
    """This rank's tracker state (`StreamTracker.state_dict` form) for a run of `world` ranks and
    `num_workers` loader workers, from the per-rank states a run of another shape saved."""
    epoch, done, beyond = consumed_prefix(per_rank, epoch_size)
    if beyond and rank == 0:
        log.warning(
            "resuming on %d devices x %d workers from a checkpoint of %d devices: %d samples some ranks had "
            "already consumed are read again (none is lost)",
            world,
            num_workers,
            len(per_rank),
            beyond,
        )
    rank_size = math.ceil(epoch_size / world)
    start = epoch * rank_size + max(0, math.ceil((done - rank) / world))  # this rank's first entry at or after `done`
    workers = max(num_workers, 1)
    state = StreamState(workers, world)
    state.workers = {w: {"next": max(0, math.ceil((start - w) / workers)), "pending": []} for w in range(workers)}
    # The bad-sample counts travel with rank zero, so a report over the whole run keeps them.
    skipped = {}
    if rank == 0:
        for saved in per_rank:
            for data_epoch, counts in saved.get("skipped", {}).items():
                merged = skipped.setdefault(str(data_epoch), {})
                for key, count in counts.items():
                    merged[key] = merged.get(key, 0) + count
    return {"stream": state.to_dict(), "skipped": skipped}
