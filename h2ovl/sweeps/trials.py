"""One trial = one `h2ovl fit` process: its self-contained config, its command, and its result in MLflow."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from h2ovl.constants import SWEEP_PID_ENV
from h2ovl.sweeps.preloaded import PreloadedTrial
from h2ovl.sweeps.spec import SweepSpec, Trial
from h2ovl.training.compose import compose

TRACKER = "h2ovl.training.tracking.MLflowTracker"


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c`, replacing the whole value there (a variant's preprocessor replaces the base's, it is
    not merged into it)."""
    node = config
    *parents, last = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = copy.deepcopy(value)


def trial_config(
    spec: SweepSpec,
    sweep_id: str,
    trial: Trial,
    root: Path,
    tags: dict[str, str],
    tracking_uri: str | None,
    init_from: str | None,
) -> dict[str, Any]:
    """The base experiment composed, then the sweep's and the trial's overrides, seed, folder and MLflow
    run (experiment, name, parent and axis tags)."""
    config = compose(spec.base)
    for key, value in {**spec.overrides, **trial.overrides}.items():
        set_dotted(config, key, value)
    config["seed_everything"] = trial.seed
    set_dotted(config, "data.seed", trial.seed)
    set_dotted(config, "trainer.default_root_dir", str(root))
    if init_from:
        set_dotted(config, "model.init.checkpoint", init_from)
    logger = config.setdefault("trainer", {}).get("logger")
    if not isinstance(logger, dict) or logger.get("class_path") != TRACKER:
        logger = {"class_path": TRACKER, "init_args": {}}
    init = dict(logger.get("init_args") or {})
    init.update(
        experiment_name=spec.experiment,
        run_name=trial.name,
        sweep_id=sweep_id,
        log_model=False,
        tags={**(init.get("tags") or {}), **tags},
    )
    if tracking_uri:
        init["tracking_uri"] = tracking_uri
    config["trainer"]["logger"] = {"class_path": TRACKER, "init_args": init}
    return config


def trial_tags(sweep_id: str, trial: Trial, parent_run_id: str | None, role: str = "trial") -> dict[str, str]:
    tags = {"sweep_id": sweep_id, "role": role, "trial": trial.name, "variant": trial.variant, "seed": str(trial.seed)}
    tags.update({f"axis.{key}": str(value) for key, value in trial.axes.items()})
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id  # shows the trial under the sweep's run in the MLflow UI
    return tags


def last_checkpoint(root: Path) -> Path:
    """The `last.ckpt` a trial's run writes under its folder `root` (its `checkpoint.dirpath`)."""
    return root / "checkpoints" / "last.ckpt"


def write_trial(config: dict[str, Any], root: Path) -> tuple[Path, list[str]]:
    """Writes `<root>/config.yaml`; the command continues from `last.ckpt` when an earlier attempt left one."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "h2ovl.cli", "fit", "--config", str(path)]
    if last_checkpoint(root).is_file():
        command += ["--ckpt_path", "last"]
    return path, command


_running: dict[int, subprocess.Popen | PreloadedTrial] = {}
_running_lock = threading.Lock()


def run_command(command: list[str], log: Path, env: dict[str, str] | None = None, preload: bool = False) -> int:
    """Runs a trial's process with its output in `log`; returns the exit code. Module-level so that
    submitit can pickle it for a cluster job. With `preload` (an `h2ovl.cli` command, see
    `h2ovl.sweeps.preloaded`), the process is forked from one that has done the imports.

    The trial gets its own process group, so `stop_trials` reaches it and everything it started (data
    loader workers) with one signal, and it learns the sweep's pid, so it stops itself should the sweep
    die without a word (SIGKILL; see `h2ovl.training.lightning_cli.watch_parent`). Being in a group of its own, it
    would miss SLURM's warning before the time limit, which reaches this process (a SLURM array task, where
    this runs in the main thread): that warning is forwarded (`forward_requeue_signals`)."""
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}{'  (forked, imports preloaded)' if preload else ''}\n")
        out.flush()
        environment = {**os.environ, **(env or {}), SWEEP_PID_ENV: str(os.getpid())}
        process: subprocess.Popen | PreloadedTrial
        if preload:
            process = PreloadedTrial(command[3:], log, environment)
        else:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=environment, start_new_session=True
            )
        with _running_lock:
            _running[process.pid] = process
        try:
            with forward_requeue_signals(process.pid):
                return process.wait()
        finally:
            with _running_lock:
                _running.pop(process.pid, None)


#: SLURM's warning before a job's time limit (`--signal`): SIGUSR1 as Lightning's SLURM environment expects
#: it, SIGUSR2 as submitit asks for it.
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


@contextmanager
def forward_requeue_signals(process_group: int) -> Iterator[None]:
    """While a trial runs in the main thread: SLURM's pre-timeout signal, caught here, reaches the trial's
    process group as SIGUSR1, on which Lightning's SLURM auto-requeue saves `hpc_ckpt_<n>.ckpt` and requeues
    the job; the requeued trial resumes from it (`h2ovl.training.lightning_cli`). submitit's own handler (which cannot
    checkpoint a trial it does not own) is set aside meanwhile. Off the main thread (trials side by side on
    one machine) signals cannot be caught, and nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: Any) -> None:
        try:
            os.killpg(process_group, signal.SIGUSR1)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in REQUEUE_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_trials(sig: int = signal.SIGTERM, grace: float = 60.0) -> list[int]:
    """Send `sig` to every running trial's process group, wait up to `grace` seconds for them to end
    (a trial stopped by SIGTERM exits after its current step), then SIGKILL what is left. Returns the pids."""
    with _running_lock:
        processes = list(_running.values())
    for process in processes:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    return [process.pid for process in processes]


def log_tail(log: Path, lines: int = 15) -> str:
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
