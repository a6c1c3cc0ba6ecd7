"""`h2ovl sweep`: runs a spec's trials (locally, N at a time, or as a SLURM job array through submitit),
each its own `h2ovl fit` process, under one MLflow parent run, resumably. This module orchestrates and
keeps the MLflow bookkeeping; the trials come from `search` (ask/tell), their state lives in `state`,
their processes in `trials`, local GPU sets and heartbeats in `local`, job arrays in `slurm`.

The sweep's folder `outputs/sweeps/<id>/` holds `state.json` (each trial's status, run id, metric value
and, for failures, the error), one folder per trial (config, log, checkpoints) and the results. Running
the same command again resumes: finished trials are skipped, failed and unfinished ones run again (from
their `last.ckpt` when they left one, in the same MLflow run; runs an earlier attempt left that will not be
continued are deleted, so each trial ends with exactly one run).

The sweep owns its trials: SIGTERM or Ctrl-C to the sweep is forwarded to every running trial (each in
its own process group), the sweep waits for them, records them as interrupted and marks its MLflow run
KILLED; a trial whose sweep died outright (SIGKILL) stops itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from h2ovl.errors import RunFailed, SettingError, Stopped
from h2ovl.sweeps.local import device_slots, heartbeat, progress_line
from h2ovl.sweeps.preloaded import one_cpu_process, preloadable, start_forkserver
from h2ovl.sweeps.results import filter_value
from h2ovl.sweeps.search import FixedTrials, OptunaTrials
from h2ovl.sweeps.spec import INIT_STAGE, SweepSpec, Trial
from h2ovl.sweeps.state import FAILED, FINISHED, INTERRUPTED, SweepState
from h2ovl.sweeps.trials import (
    last_checkpoint,
    log_tail,
    run_command,
    stop_trials,
    trial_config,
    trial_tags,
    write_trial,
)
from h2ovl.training.tracking import DEFAULT_TRACKING_URI, artifact_root, flatten

if TYPE_CHECKING:
    from h2ovl.sweeps.data_ahead import DataAhead

log = logging.getLogger(__name__)


class SweepInterrupted(Stopped):
    """The sweep was told to stop (SIGTERM, SIGINT): its trials were stopped and recorded."""

    def __init__(self, signum: int) -> None:
        super().__init__(
            signum,
            f"stopped by {signal.Signals(signum).name}: running trials were stopped and recorded "
            "as interrupted; run the same command to resume",
        )


def tracking_uri(explicit: str | None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@dataclass
class SweepOptions:
    sweep_id: str | None = None
    launcher: str = "local"
    parallel: int = 1
    only: list[str] | None = None
    dry_run: bool = False
    out: str = "outputs/sweeps"
    tracking_uri: str | None = None
    force: bool = False
    """Rerun, from scratch, trials whose resolved config changed since they ran (else that is an error)."""
    progress_every: float = 30.0
    """Seconds between progress lines for running local trials (their output goes to their logs)."""


class Sweep:
    """Runs a spec's trials (`run`), records them in `state.json` and MLflow, and resumes them. Local CPU
    trials are forked from a preloaded forkserver (`h2ovl.sweeps.preloaded`), so a script that runs a
    sweep needs the `if __name__ == "__main__":` guard that any multiprocessing code needs."""

    def __init__(self, spec: SweepSpec, options: SweepOptions) -> None:
        if options.launcher not in ("local", "slurm"):
            raise SettingError(f"launcher must be 'local' or 'slurm', got {options.launcher!r}")
        if options.parallel < 1:
            raise SettingError(f"--parallel must be at least 1, got {options.parallel}")
        self.spec, self.options = spec, options
        self.sweep_id = options.sweep_id or spec.name
        self.folder = Path(options.out) / self.sweep_id
        self.uri = tracking_uri(options.tracking_uri)
        self.state = SweepState(self.folder / "state.json")
        self._client = None
        self._stopping = threading.Event()
        self._data_ahead: DataAhead | None = None  # while local trials run

    # -- MLflow -----------------------------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.uri)
        return self._client

    def experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.spec.experiment)
        if found:
            return found.experiment_id
        return self.client.create_experiment(self.spec.experiment, artifact_location=artifact_root(self.uri))

    def parent_run(self) -> str:
        """The sweep's MLflow run: created once, reused on resume."""
        run_id = self.state.data.get("parent_run_id")
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        tags = {
            "sweep_id": self.sweep_id,
            "role": "sweep",
            "sweep.metric": self.spec.metric,
            "sweep.mode": self.spec.mode,
            "sweep.report": json.dumps(self.spec.report),
            "sweep.baseline": self.spec.baseline or "",
            "sweep.strategy": self.spec.strategy,
            "sweep.spec": str(self.spec.path),
        }
        run = self.client.create_run(self.experiment_id(), run_name=self.sweep_id, tags=tags)
        self.client.log_artifact(run.info.run_id, str(self.spec.path), artifact_path="spec")
        self.state.update(parent_run_id=run.info.run_id, sweep_id=self.sweep_id, spec=str(self.spec.path))
        return run.info.run_id

    def trial_run(self, trial: Trial) -> Any | None:
        """The trial's MLflow run (the latest, if an earlier attempt left one)."""
        runs = self.client.search_runs(
            [self.experiment_id()],
            filter_string=f"tags.sweep_id = {filter_value(self.sweep_id)} and tags.trial = {filter_value(trial.name)}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    # -- trials -----------------------------------------------------------------------------------------
    def selected(self, trials: list[Trial]) -> list[Trial]:
        only = self.options.only
        if not only:
            return trials
        chosen = [t for t in trials if t.name in only or t.variant in only]
        if not chosen:
            raise SettingError(f"--only {only} matches no trial; trials: {[t.name for t in trials]}")
        return chosen

    def plan(self) -> list[dict[str, Any]]:
        """What `--dry-run` prints: each trial with its overrides and its status so far. Every trial's
        resolved config is parsed by `h2ovl fit`'s own parser first, so a typo'd key fails here."""
        from h2ovl.training.lightning_cli import check_fit_config

        trials = self.selected(self.spec.expand()) if self.spec.strategy != "optuna" else []
        for trial in trials:
            root = self.trial_root(trial)
            check_fit_config(
                trial_config(
                    self.spec,
                    self.sweep_id,
                    trial,
                    root,
                    trial_tags(self.sweep_id, trial, None),
                    self.options.tracking_uri,
                    None,
                ),
                f"{self.spec.path}: trial {trial.name}",
            )
        changed = self.changed_trials(trials)
        rows = [
            {
                "trial": t.name,
                "seed": t.seed,
                "overrides": t.overrides,
                "status": "changed: " + ", ".join(changed[t.name][:5])
                if t.name in changed
                else self.state.trial(t.name).get("status", "pending"),
            }
            for t in trials
        ]
        stages = [
            {
                "trial": t.name,
                "seed": t.seed,
                "overrides": t.overrides,
                "status": self.state.trial(t.name).get("status", "pending"),
            }
            for t in self.spec.stage_trials()
        ]
        return stages + rows

    # -- what a trial is: its name and its resolved config --------------------------------------------------
    def settings(self, trial: Trial) -> dict[str, str]:
        """The trial's resolved config, flattened, without what the sweep adds for bookkeeping (its folder,
        MLflow run, parent and start checkpoint): what makes two attempts the same trial."""
        config = trial_config(self.spec, self.sweep_id, trial, Path("trial"), {}, None, None)
        config["trainer"].pop("logger", None)
        # flatten() shortens long values for MLflow; the digest of the whole config catches what that hides.
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return {**flatten(config), "config.sha256": digest}

    def changed_trials(self, trials: list[Trial]) -> dict[str, list[str]]:
        """Trials recorded with settings other than the spec's now, and the keys that differ."""
        changed = {}
        for trial in (*self.spec.stage_trials(), *trials):
            saved = self.state.trial(trial.name).get("settings")
            if saved is None:
                continue
            now = self.settings(trial)
            differing = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
            if len(differing) > 1:  # the digest only speaks when the visible values hide the change
                differing.remove("config.sha256")
            if differing:
                changed[trial.name] = [f"{k}: {saved.get(k)} -> {now.get(k)}" for k in differing]
        return changed

    def refuse_or_reset_changed(self, trials: list[Trial]) -> None:
        """A spec edited under the same sweep id must not pass its old results off as the new ones."""
        changed = self.changed_trials(trials)
        if not changed:
            return
        if not self.options.force:
            listed = "; ".join(
                f"{name} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})" for name, keys in changed.items()
            )
            raise SettingError(
                f"sweep {self.sweep_id!r}: {len(changed)} trials ran with other settings than the spec "
                f"gives now: {listed}. Run it under a new --sweep-id, or pass --force to rerun them from scratch"
            )
        stages = [t.name for t in self.spec.stage_trials()]
        first_changed = next((k for k, name in enumerate(stages) if name in changed), None)
        if first_changed is not None:  # the stages after it, and every trial, started from its checkpoint
            changed.update({name: [] for name in stages[first_changed:]})
            changed.update({t.name: [] for t in trials})
        for name in changed:
            log.warning("sweep %s: %s changed since it ran: rerunning it from scratch (--force)", self.sweep_id, name)
            shutil.rmtree(self.folder / "trials" / Trial.folder_name(name), ignore_errors=True)
            self.state.forget(name)
        if first_changed is not None:
            self.state.update(init_checkpoint=None)

    def drop_stale_runs(self, trial: Trial, root: Path) -> None:
        """Delete the runs earlier attempts of `trial` left that this attempt will not continue: all of
        them when there is no checkpoint to resume, else all but the checkpoint's own run."""
        from h2ovl.training.tracking import checkpoint_run_id

        checkpoint = last_checkpoint(root)
        keep = checkpoint_run_id(checkpoint) if checkpoint.is_file() else None
        runs = self.client.search_runs(
            [self.experiment_id()],
            filter_string=f"tags.sweep_id = {filter_value(self.sweep_id)} and tags.trial = {filter_value(trial.name)}",
            max_results=1000,
        )
        for run in runs:
            if run.info.run_id != keep:
                log.info("trial %s: deleting run %s of an earlier attempt (not resumed)", trial.name, run.info.run_id)
                self.client.delete_run(run.info.run_id)

    def prepare(
        self, trial: Trial, parent: str | None, role: str = "trial"
    ) -> tuple[list[str], Path, dict[str, str], dict[str, Any]]:
        root = self.trial_root(trial)
        self.drop_stale_runs(trial, root)
        self.state.update(trial.name, settings=self.settings(trial))
        init_from = self.stage_start(trial) if role == INIT_STAGE else self.state.data.get("init_checkpoint")
        config = trial_config(
            self.spec,
            self.sweep_id,
            trial,
            root,
            trial_tags(self.sweep_id, trial, parent, role),
            self.options.tracking_uri,
            init_from,
        )
        _, command = write_trial(config, root)
        env = {"MLFLOW_TRACKING_URI": self.uri}
        if self._data_ahead is not None:
            self._data_ahead.wait_for(config)
        return command, root / "fit.log", env, config

    def record(self, trial: Trial, returncode: int, log_file: Path) -> dict[str, Any]:
        run = self.trial_run(trial)
        value = run.data.metrics.get(self.spec.metric) if run is not None else None
        fields: dict[str, Any] = {
            "run_id": run.info.run_id if run else None,
            "value": value,
            "attempts": self.state.trial(trial.name).get("attempts", 0) + 1,
            "log": str(log_file),
        }
        if returncode == 0:
            fields.update(status=FINISHED, error=None)
        elif self._stopping.is_set():
            fields.update(status=INTERRUPTED, error=f"stopped with the sweep (exit code {returncode})")
        else:
            error = log_tail(log_file)
            fields.update(status=FAILED, error=f"exit code {returncode}: {error}")
            if run is not None:
                self.client.set_tag(run.info.run_id, "error", error[-4000:])
            log.error("trial %s failed (exit code %d); log: %s", trial.name, returncode, log_file)
        self.state.update(trial.name, **fields)
        return fields

    def run_local(self, trials: list[Trial], parent: str | None) -> None:
        # A trial takes a free set of GPUs and gives it back when it ends, so two running trials never
        # share one (trials finish out of order).
        free: queue.Queue[str | None] = queue.Queue()
        for slot in self._device_slots() or [None] * self.options.parallel:
            free.put(slot)

        def one(trial: Trial) -> None:
            if self._stopping.is_set():
                return
            command, log_file, env, config = self.prepare(trial, parent)
            if self._stopping.is_set():  # stopped while its data was being written
                return
            slot = free.get()
            if slot is not None:
                env["CUDA_VISIBLE_DEVICES"] = slot
            elif self.options.parallel > 1 and "OMP_NUM_THREADS" not in os.environ:
                # CPU trials side by side: split the cores rather than oversubscribe them.
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.options.parallel))
            print(f"[{self.sweep_id}] start {trial.name}", flush=True)
            try:
                with self._heartbeat(trial):
                    preload = preloadable(command, config, slot)
                    fields = self.record(trial, run_command(command, log_file, env, preload), log_file)
            finally:
                free.put(slot)
            self._progress(trial, fields)

        pool = ThreadPoolExecutor(self.options.parallel)
        try:
            list(pool.map(one, trials))
        finally:
            if self._stopping.is_set():
                stop_trials()
            pool.shutdown(wait=True, cancel_futures=True)

    def _device_slots(self) -> list[str]:
        return device_slots(self.options.parallel)

    def run_slurm(self, trials: list[Trial], parent: str | None) -> None:
        from h2ovl.sweeps.slurm import submit_array

        prepared = [(trial, *self.prepare(trial, parent)) for trial in trials]
        jobs = submit_array(
            self.folder / "slurm",
            self.spec.slurm,
            [(c, lf, env) for _, c, lf, env, _ in prepared],
            self.options.parallel,
        )
        for (trial, _, log_file, _, _), job in zip(prepared, jobs):
            try:
                returncode = int(job.result())
            except Exception as error:  # noqa: BLE001 - the job itself failed (node, time limit): a failed trial
                log_file.parent.mkdir(parents=True, exist_ok=True)
                with log_file.open("a") as out:
                    out.write(f"\nsubmitit job {job.job_id} failed: {error}\n")
                returncode = 1
            self._progress(trial, self.record(trial, returncode, log_file))

    def _heartbeat(self, trial: Trial):
        """Every `progress_every` seconds while the trial runs: its step of `max_steps`, loss and ETA, read
        from its MLflow run (a trial's own output goes to its log file, not the console)."""
        total = int(self.state.trial(trial.name).get("settings", {}).get("trainer.max_steps", -1))

        def line(elapsed: float) -> str | None:
            try:
                run = self.trial_run(trial)
                history = self.client.get_metric_history(run.info.run_id, "train/loss") if run else []
            except Exception as error:  # noqa: BLE001 - progress is best effort; the trial's result is not
                log.debug("no progress for %s: %s", trial.name, error)
                return None
            return f"[{self.sweep_id}] {trial.name}: {progress_line(history, total, elapsed)}"

        return heartbeat(self.options.progress_every, line)

    def _progress(self, trial: Trial, fields: dict[str, Any]) -> None:
        done = [t for t in self.state.data["trials"].values() if t.get("status") == FINISHED]
        failed = [t for t in self.state.data["trials"].values() if t.get("status") == FAILED]
        value = fields.get("value")
        shown = "n/a" if value is None else f"{value:.4g}"
        print(
            f"[{self.sweep_id}] {trial.name}: {fields['status']}, {self.spec.metric} = {shown} "
            f"({len(done)} finished, {len(failed)} failed)",
            flush=True,
        )

    def launch(self, trials: list[Trial], parent: str | None) -> None:
        if self.options.launcher == "slurm":
            self.run_slurm(trials, parent)
        else:
            self.run_local(trials, parent)

    def trial_root(self, trial: Trial) -> Path:
        """The folder of a trial's config, log and checkpoints."""
        return self.folder / "trials" / trial.folder

    def stage_checkpoint(self, trial: Trial) -> str:
        return str(last_checkpoint(self.trial_root(trial)))

    def stage_start(self, trial: Trial) -> str | None:
        """The checkpoint an init stage starts from: the stage before it (None for the first)."""
        stages = self.spec.stage_trials()
        index = [t.name for t in stages].index(trial.name)
        return self.stage_checkpoint(stages[index - 1]) if index else None

    def run_init_stages(self, parent: str) -> None:
        stages = self.spec.stage_trials()
        for trial in stages:
            if self.state.trial(trial.name).get("status") != FINISHED:
                command, log_file, env, config = self.prepare(trial, parent, role=INIT_STAGE)
                after = (
                    "every trial starts from its last checkpoint"
                    if trial is stages[-1]
                    else "the next stage starts from its last checkpoint"
                )
                print(f"[{self.sweep_id}] start {trial.name} ({after})", flush=True)
                with self._heartbeat(trial):
                    fields = self.record(
                        trial, run_command(command, log_file, env, preloadable(command, config, None)), log_file
                    )
                self._progress(trial, fields)
                if fields["status"] != FINISHED:
                    raise RunFailed(f"the sweep's {trial.name} failed; see {log_file}:\n{fields['error']}")
            self.state.update(init_checkpoint=self.stage_checkpoint(trial))

    def best_variant(self) -> tuple[str, float] | None:
        """(variant, mean over its seeds) of the best configuration by the sweep's metric, over finished trials."""
        values: dict[str, list[float]] = {}
        stages = {t.name for t in self.spec.stage_trials()}
        for name, t in self.state.data["trials"].items():
            if t.get("status") == FINISHED and t.get("value") is not None and name not in stages:
                values.setdefault(name.rsplit("/seed=", 1)[0], []).append(t["value"])
        if not values:
            return None
        means = [(variant, sum(v) / len(v)) for variant, v in values.items()]
        return (min if self.spec.mode == "min" else max)(means, key=lambda item: item[1])

    def gallery_checkpoints(self) -> tuple[dict[str, Path], str] | None:
        """(variant -> last checkpoint of its first-seed trial, that trial's held-out data) for the gallery;
        None when no such trial finished with a checkpoint on this machine."""
        from h2ovl.sweeps.gallery import held_out_data

        checkpoints: dict[str, Path] = {}
        data = None
        for trial in self.spec.expand() if self.spec.strategy != "optuna" else []:
            root = self.trial_root(trial)
            checkpoint = last_checkpoint(root)
            if (
                trial.seed != self.spec.seeds[0]
                or self.state.trial(trial.name).get("status") != FINISHED
                or not checkpoint.is_file()
            ):
                continue
            checkpoints[trial.variant] = checkpoint
            data = data or held_out_data(yaml.safe_load((root / "config.yaml").read_text()))
        return (checkpoints, data) if checkpoints and data else None

    def start_ahead(self) -> None:
        """Local trials: start the preloaded forkserver's imports and write every trial's synthetic data in
        the background (`h2ovl.sweeps.data_ahead`), so neither waits in front of the first step of a stage."""
        from h2ovl.sweeps.data_ahead import DataAhead

        trials = [
            *self.spec.stage_trials(),
            *(self.selected(self.spec.expand()) if self.spec.strategy != "optuna" else []),
        ]
        trials = [t for t in trials if self.state.trial(t.name).get("status") != FINISHED]
        configs = [trial_config(self.spec, self.sweep_id, t, Path("trial"), {}, None, None) for t in trials]
        if configs and not self._device_slots() and one_cpu_process(configs[0]):  # its trials will be forked
            start_forkserver()
        self._data_ahead = DataAhead(configs)

    def _run_trials(self, parent: str) -> None:
        if self.spec.strategy != "optuna":
            self.refuse_or_reset_changed(self.selected(self.spec.expand()))
        if self.options.launcher == "local":
            self.start_ahead()
        self.run_init_stages(parent)
        source = self.trial_source()
        while (batch := source.ask()) is not None:
            if batch:
                self.launch(batch, parent)
            source.tell(lambda trial: self.state.trial(trial.name).get("value"))
        for key, value in source.tags().items():
            self.client.set_tag(parent, key, value)

    def trial_source(self) -> FixedTrials | OptunaTrials:
        def finished(trial: Trial) -> bool:
            return self.state.trial(trial.name).get("status") == FINISHED

        if self.spec.strategy == "optuna":
            return OptunaTrials(self.spec, self.folder, self.sweep_id, self.options.parallel, finished)
        trials = self.selected(self.spec.expand())
        skipped = sum(finished(t) for t in trials)
        if skipped:
            print(f"[{self.sweep_id}] resuming: {skipped} finished trials skipped", flush=True)
        return FixedTrials(trials, finished)

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the sweep: no new trial starts, running ones are stopped and recorded
        as interrupted (`run_local`), and `SweepInterrupted` ends `run`."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: Any) -> None:
            if not self._stopping.is_set():
                self._stopping.set()
                raise SweepInterrupted(signum)

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def run(self) -> dict[str, Any]:
        if self.options.dry_run:
            return {
                "sweep_id": self.sweep_id,
                "folder": str(self.folder),
                "parallel": self.options.parallel,
                "trials": self.plan(),
            }
        parent = self.parent_run()
        # Every way out closes the parent run with what happened: KILLED when stopped, FAILED on an error.
        try:
            with self._stop_on_signals():
                self._run_trials(parent)
        except SweepInterrupted:
            stop_trials()
            self.client.log_artifact(parent, str(self.state.path))
            self.client.set_terminated(parent, "KILLED")
            raise
        except BaseException:
            self.client.set_terminated(parent, "FAILED")
            raise
        trials = self.state.data["trials"]
        failed = sorted(n for n, t in trials.items() if t.get("status") == FAILED)
        finished = sum(t.get("status") == FINISHED for t in trials.values())
        self.client.log_metric(parent, "sweep/finished", finished)
        self.client.log_metric(parent, "sweep/failed", len(failed))
        best = self.best_variant()
        if best is not None:
            self.client.set_tag(parent, "sweep.best_variant", best[0])
            self.client.log_metric(parent, f"best/{self.spec.metric}", best[1])
        self.client.log_artifact(parent, str(self.state.path))
        self.client.set_terminated(parent, "FINISHED" if not failed else "FAILED")
        return {
            "sweep_id": self.sweep_id,
            "parent_run_id": parent,
            "finished": finished,
            "failed": failed,
            "state": str(self.state.path),
        }
