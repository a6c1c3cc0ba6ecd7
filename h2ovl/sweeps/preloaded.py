"""Trials forked from a process that has already imported torch, Lightning, transformers and MLflow.

A CPU trial of the demo trains for about a minute; a fresh `h2ovl fit` process spends ~12 s of it on
imports (Lightning pulls in torchmetrics and torchvision, MLflow its store) before its first step
(measured: docs/results.md). The standard library's forkserver imports them once per sweep; each trial is
forked from it, a fresh process with its own memory, process group and log, whose imports are done.

Only single-process CPU trials start this way (`preloadable`): a trial that launches DDP ranks re-runs its
own command line, and a GPU trial must see its `CUDA_VISIBLE_DEVICES` before anything touches CUDA, so
those start as subprocesses. The sweep starts the forkserver as it starts (`start_forkserver`: the imports
run while the first stage's data is written), else the first preloaded trial does; it inherits the
environment of that moment. Each trial's own variables are set in the trial before it runs, and its
thread count is applied to torch directly (OpenMP read `OMP_NUM_THREADS` when the forkserver imported it).
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from h2ovl.constants import SWEEP_PID_ENV

#: What a trial imports before its first step (`h2ovl fit`'s path), imported once in the forkserver.
PRELOAD = ["h2ovl.cli", "h2ovl.training.lightning_cli", "mlflow", "mlflow.store.tracking.sqlalchemy_store"]

_context: Any = None


def _forkserver() -> Any:
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        _context = context
    return _context


def start_forkserver() -> None:
    """Starts the forkserver now, without waiting: it imports `PRELOAD` in the background, and the first
    trial's fork waits for that to finish."""
    from multiprocessing import forkserver

    _forkserver()
    forkserver.ensure_running()


def one_cpu_process(config: dict[str, Any]) -> bool:
    """Whether a trial's config trains in one process on CPU (no DDP ranks, no accelerator)."""
    trainer = config.get("trainer") or {}
    one_process = str(trainer.get("devices", 1)) in ("1", "auto") and int(trainer.get("num_nodes", 1) or 1) == 1
    return one_process and str(trainer.get("accelerator", "cpu")) == "cpu"


def preloadable(command: Sequence[str], config: dict[str, Any], device_slot: str | None) -> bool:
    """Whether a trial may be forked from the preloaded server: an `h2ovl.cli` command on CPU, one process."""
    return device_slot is None and one_cpu_process(config) and list(command[1:3]) == ["-m", "h2ovl.cli"]


def _trial_main(argv: list[str], log: str, environment: dict[str, str]) -> None:
    """In the forked trial: its own process group and log, its environment, then `h2ovl <argv>`."""
    os.setsid()  # as `start_new_session`: `stop_trials` signals the trial and its loader workers at once
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.environ.clear()
    # The trial's parent is the forkserver, which exits when the sweep does: the trial watches it.
    os.environ.update({**environment, SWEEP_PID_ENV: str(os.getppid())})
    if environment.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(int(environment["OMP_NUM_THREADS"]))
    # Exactly `python -m h2ovl.cli <argv>` (sys.argv included), run by name: the CLI imports the sweeps,
    # so an import of it here would be a cycle; its imports are already done in the forkserver.
    sys.argv = ["h2ovl.cli", *argv]
    runpy.run_module("h2ovl.cli", run_name="__main__", alter_sys=True)


class PreloadedTrial:
    """A forked trial with the part of `subprocess.Popen`'s interface the runner uses (`pid`, `wait`)."""

    def __init__(self, argv: Sequence[str], log: Path, environment: dict[str, str]) -> None:
        self.process = _forkserver().Process(
            target=_trial_main, args=(list(argv), str(log), dict(environment)), name=f"h2ovl-trial-{log.parent.name}"
        )
        self.process.start()

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(self.process.name, timeout or 0.0)
        return int(self.process.exitcode)
