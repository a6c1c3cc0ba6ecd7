"""What running trials on this machine needs besides the processes themselves (`trials.run_command`):
disjoint GPU sets for trials side by side, and a heartbeat line per running trial."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from h2ovl.training.progress import duration


def device_slots(parallel: int) -> list[str]:
    """With `parallel` trials at a time on a GPU machine: that many disjoint `CUDA_VISIBLE_DEVICES` sets
    ([] on one trial at a time, or without GPUs: trials share the CPU)."""
    if parallel == 1:
        return []
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no CUDA: trials share the CPU
        count = 0
    per = count // parallel
    return [",".join(str(d) for d in range(s * per, (s + 1) * per)) for s in range(parallel)] if per else []


def progress_line(history: list[Any], total: int, elapsed: float) -> str:
    """`step 120/500, train/loss 1.204, ETA 2m44s (95 s)` from a run's `train/loss` history (MLflow
    metrics, steps from 0); the first logged step's time is the start of the rate."""
    if not history:
        return f"starting ({elapsed:.0f} s)"
    done = history[-1].step + 1
    first = history[0]
    rate = (done - first.step - 1) / max((history[-1].timestamp - first.timestamp) / 1000, 1e-9)
    eta = f", ETA {duration((total - done) / rate)}" if total > 0 and rate > 0 else ""
    of = f"/{total}" if total > 0 else ""
    return f"step {done}{of}, train/loss {history[-1].value:.3f}{eta} ({elapsed:.0f} s)"


@contextmanager
def heartbeat(every: float, line: Callable[[float], str | None]) -> Iterator[None]:
    """Every `every` seconds while the block runs, print `line(elapsed)` (None: nothing this time)."""
    done = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not done.wait(every):
            text = line(time.monotonic() - started)
            if text:
                print(text, flush=True)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
