"""MLflow tracking, all of it: a logger (`MLflowTracker`: Lightning's `MLFlowLogger` with a local default
store, a run that survives resume, and a training run that never dies because the tracking server did)
and one callback (`RunTracking`: the resolved config, tags and run id that tie a run, its checkpoints and
its MLflow record together, and every step logged exactly once across a kill and a resume).

- Store: `tracking_uri`, else `MLFLOW_TRACKING_URI` (read when the logger is built, as MLflow's own tools
  read it), else the SQLite file `mlflow.db` in the working directory (`mlflow ui --backend-store-uri
  sqlite:///mlflow.db` shows it).
- Resume: the run id goes into every checkpoint (`RunTracking.on_save_checkpoint`), and `h2ovl fit
  --ckpt_path ...` continues that run (`continue_tracked_run`). Lightning saves a step's checkpoint before
  it sends that step's metrics to the logger: a kill in between would lose them, since the resumed run
  starts after the checkpoint. So the checkpoint carries them, the resumed run logs them, and the logger
  drops every step the store already holds.
- `h2ovl validate/test/predict --ckpt_path ...` log into the run that trained the checkpoint, at its step.
- Unreachable server: the first contact is retried briefly; if it still fails the run is logged to a local
  fallback store (`fallback_dir/mlflow.db`) and the log says where, so nothing the run produced is lost.
  A server that fails later costs only the calls that failed: their metrics are appended to
  `fallback_dir/unsent-<run id>.jsonl` and counted at the end.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from h2ovl.training.weights import load_checkpoint_meta

log = logging.getLogger(__name__)

#: The checkpoint key that carries the MLflow run id across a resume.
RUN_ID_KEY = "mlflow_run_id"
#: The checkpoint key holding the metrics of the step the checkpoint was saved at.
STEP_METRICS_KEY = "h2ovl_step_metrics"
#: What the module logs every optimizer step (the step metrics a checkpoint carries).
STEP_METRICS_PREFIX = "train/"

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: MLflow param values are cut here, visibly; the full config is the run's `config.yaml` artifact.
MAX_PARAM_CHARS = 500
TRUNCATED = "...[truncated; see config.yaml]"
# A dead server must not stall the start for minutes (MLflow's defaults: 7 retries, 120 s timeout).
_FIRST_CONTACT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store's file (`<its folder>/mlruns`),
    so a store and its artifacts stay together (MLflow's own default is `./mlruns` wherever the process
    runs); None, MLflow's choice, for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///") :]).resolve().parent / "mlruns").as_uri()


def default_run_name(experiment: str, stage: str | None) -> str:
    """`<experiment>-<stage>-seed<seed>-<6 hex>`: runs told apart by what they are, plus a suffix from the
    OS's randomness. MLflow's own random names come from Python's global RNG, which the run's seed fixes,
    so every run of a seed would get the same name."""
    seed = os.environ.get("PL_GLOBAL_SEED")  # set by Lightning's seed_everything, before the logger is built
    parts = [experiment, stage or "run", f"seed{seed}" if seed is not None else None, secrets.token_hex(3)]
    return "-".join(p for p in parts if p)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"model.optim.lr": "0.0001", ...}; lists stay one value; long values truncated visibly."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
            continue
        text = json.dumps(value, default=str) if isinstance(value, (list, tuple, Mapping)) else str(value)
        flat[name] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - len(TRUNCATED)] + TRUNCATED
    return flat


class MLflowTracker(MLFlowLogger):
    """Args:
    experiment_name: the MLflow experiment (one per recipe, e.g. `cpu-tiny`, `0.8b-pretrain-1`).
    run_name: the run's display name.
    tracking_uri: the store; None: `MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db`.
    stage: the training stage, as a tag (`pretrain-1`, `finetune`, ...).
    sweep_id: tags the run as a sweep trial; None: the `H2OVL_SWEEP_ID` environment variable.
    tags: more tags.
    log_model: log checkpoints as artifacts (True: best and last at the end; "all": each one; False for sweeps).
    artifact_location: where a new experiment keeps its artifacts; None: beside a SQLite store's file.
    fallback_dir: where a run whose server cannot be reached is logged instead.
    save_dir: the local directory of the run's files (its `config.yaml`); the CLI sets it to
        `trainer.default_root_dir`.
    """

    def __init__(
        self,
        experiment_name: str = "h2ovl",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        stage: str | None = None,
        sweep_id: str | None = None,
        tags: dict[str, str] | None = None,
        log_model: Literal[True, False, "all"] = False,
        artifact_location: str | None = None,
        fallback_dir: str = "outputs/mlflow-fallback",
        save_dir: str | None = None,
    ) -> None:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
        tags = dict(tags or {})
        if stage:
            tags["stage"] = stage
        sweep_id = sweep_id or os.environ.get("H2OVL_SWEEP_ID")
        if sweep_id:
            tags["sweep_id"] = sweep_id
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name or default_run_name(experiment_name, stage),
            tracking_uri=uri,
            tags=tags,
            log_model=log_model,
            artifact_location=artifact_location or artifact_root(uri),
        )
        self.requested_uri = uri
        self.local_dir = save_dir
        self.fallback_dir = Path(fallback_dir)
        self.fell_back = False
        self.unsent = 0
        # In a continued run: per metric, the highest step the store held when this process first logged it.
        # Steps up to it were logged by the attempt that was killed, and are not logged twice.
        self._continued = False
        self._steps_in_store: dict[str, int] = {}
        self._pinned_step: int | None = None
        self._config_logged = False
        self._killed = False
        self.experiment_name = experiment_name

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    @property
    def save_dir(self) -> str | None:
        """Lightning's `trainer.log_dir` (where LightningCLI writes `config.yaml`); MLflow itself keeps
        everything in its store."""
        return self.local_dir

    # -- the run -------------------------------------------------------------------------------------
    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._initialized:
            return self._mlflow_client
        saved = {k: os.environ.get(k) for k in _FIRST_CONTACT_ENV}
        os.environ.update({k: v for k, v in _FIRST_CONTACT_ENV.items() if saved[k] is None})
        try:
            try:
                return super().experiment
            except Exception as err:  # noqa: BLE001 - sorted out just below
                if self._run_id is None or getattr(err, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                    raise
                # A checkpoint from another store (another machine, a deleted mlflow.db): its run is not
                # here, so a new run takes the logging, tagged with the run it continues.
                log.warning(
                    "MLflow run %s (named by the checkpoint) is not in the store %s: logging into a new run",
                    self._run_id,
                    self._tracking_uri,
                )
                self.tags = {**(self.tags or {}), "h2ovl.resumed_run_id": self._run_id}
                self._run_id, self._continued = None, False
                return super().experiment
        except Exception as err:  # noqa: BLE001 - any failure to reach the store means: fall back
            return self._fall_back(err)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)

    def _fall_back(self, err: Exception) -> Any:
        from mlflow.tracking import MlflowClient

        self.fallback_dir.mkdir(parents=True, exist_ok=True)
        fallback = f"sqlite:///{(self.fallback_dir / 'mlflow.db').resolve()}"
        log.warning(
            "MLflow store %s cannot be reached (%s: %s); training goes on and logs to %s instead "
            "(look at it with `mlflow ui --backend-store-uri %s`)",
            self.requested_uri,
            type(err).__name__,
            str(err).splitlines()[0][:200],
            fallback,
            fallback,
        )
        self.tags = {**(self.tags or {}), "h2ovl.fallback_from": self.requested_uri}
        if self._run_id is not None:  # a resumed run that lives on the unreachable server
            self.tags["h2ovl.resumed_run_id"] = self._run_id
            self._run_id, self._continued = None, False
        self._tracking_uri = fallback
        self._mlflow_client = MlflowClient(fallback)
        self._experiment_id = None
        self.fell_back = True
        return MLFlowLogger.experiment.fget(self)

    def continue_run(self, run_id: str) -> None:
        """Log into an existing run (a resumed training run) instead of creating one. A step the run
        already holds a metric at is not logged again: a resume re-runs the steps after its checkpoint,
        which the killed attempt may have logged."""
        if self._initialized:
            raise RuntimeError("continue_run must come before the run is first used")
        self._run_id = run_id
        self._continued = True

    def pin_step(self, step: int) -> None:
        """Log every metric at `step`: `h2ovl validate/test` of a checkpoint logs at the checkpoint's step,
        not at Lightning's step 0, which would put a false first point on the run's curves."""
        self._pinned_step = step

    def _not_yet_logged(self, metrics: Mapping[str, float], step: int | None) -> dict[str, float]:
        if not self._continued or step is None or self._run_id is None:
            return dict(metrics)
        for key in metrics:
            if key not in self._steps_in_store:
                history = self.experiment.get_metric_history(self.run_id, key)
                self._steps_in_store[key] = max((m.step for m in history), default=-1)
        return {k: v for k, v in metrics.items() if step > self._steps_in_store[k]}

    # -- logging that a failing server cannot break ----------------------------------------------------
    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """Params as MLflow keeps them: flattened, truncated visibly, and never re-logged with a new value
        (MLflow refuses that): in a resumed run a changed value becomes a `resume.<key>` tag."""
        from mlflow.entities import Param

        params = vars(params) if not isinstance(params, Mapping) else params
        if self._config_logged:
            # Lightning logs the module's and data module's init arguments too; the resolved config (logged
            # first, as `model.*`, `data.*`) holds them all, so only our own `params/` counts pass.
            params = {k: v for k, v in params.items() if str(k).startswith("params/")}
        flat = flatten(params)
        if not flat:
            return
        try:
            existing = self.experiment.get_run(self.run_id).data.params
            new = [Param(k, v) for k, v in flat.items() if k not in existing]
            changed = {f"resume.{k}": v for k, v in flat.items() if k in existing and existing[k] != v}
            for start in range(0, len(new), 100):  # MLflow's batch limit
                self.experiment.log_batch(self.run_id, params=new[start : start + 100])
            for key, value in changed.items():
                self.experiment.set_tag(self.run_id, key, value)
        except Exception as err:  # noqa: BLE001
            self._keep_unsent({"params": flat}, err)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = self._pinned_step if self._pinned_step is not None else step
        try:
            metrics = self._not_yet_logged(metrics, step)
            if metrics:
                super().log_metrics(metrics, step)
        except Exception as err:  # noqa: BLE001
            self._keep_unsent({"step": step, "metrics": {k: float(v) for k, v in metrics.items()}}, err)

    @rank_zero_only
    def log_config(self, config_yaml: str, config: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        """The resolved config as the run's `config.yaml` artifact and as params, plus the run's tags."""
        try:
            self.experiment.log_text(self.run_id, config_yaml, "config.yaml")
            for key, value in tags.items():
                self.experiment.set_tag(self.run_id, key, value)
        except Exception as err:  # noqa: BLE001
            self._keep_unsent({"tags": dict(tags)}, err)
        self.log_hyperparams(config)
        self._config_logged = True

    def _keep_unsent(self, record: dict[str, Any], err: Exception) -> None:
        self.fallback_dir.mkdir(parents=True, exist_ok=True)
        path = self.fallback_dir / f"unsent-{self._run_id}.jsonl"
        if not self.unsent:
            log.warning("MLflow logging failed (%s: %s); unsent records go to %s", type(err).__name__, err, path)
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.unsent += 1

    @rank_zero_only
    def mark_killed(self) -> None:
        """The run was stopped by a signal: it ends KILLED, not FAILED (nothing in it went wrong)."""
        self._killed = True

    def finalize(self, status: str = "success") -> None:
        if self._killed and status != "success":
            status = "KILLED"
        try:
            super().finalize(status)
        except Exception as err:  # noqa: BLE001
            self._keep_unsent({"finalize": status}, err)
        if self.unsent:
            log.warning("%d MLflow logging calls failed; their records are in %s", self.unsent, self.fallback_dir)
        if self.fell_back:
            log.warning("this run was logged to the fallback store %s, not %s", self._tracking_uri, self.requested_uri)


# -- the run behind a checkpoint --------------------------------------------------------------------------
def checkpoint_run_id(path: str | Path) -> str | None:
    """The MLflow run a checkpoint was trained in (the weights are not read)."""
    return load_checkpoint_meta(path).get(RUN_ID_KEY)


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a checkpoint was saved at."""
    return int(load_checkpoint_meta(path).get("global_step", 0))


def continue_tracked_run(tracker: Any, ckpt: Path | None, subcommand: str) -> None:
    """Check the checkpoint a command starts from (it exists, reads, holds only data) before Lightning loads
    it, and log into the MLflow run it came from: a resumed fit continues its curves; a validation, test or
    prediction logs at the checkpoint's step (the training curves' last point)."""
    if ckpt is None:
        return
    run_id = checkpoint_run_id(ckpt)  # raises CheckpointError for a bad file
    if not isinstance(tracker, MLflowTracker):
        return
    if subcommand != "fit":
        tracker.pin_step(max(checkpoint_step(ckpt) - 1, 0))
    if run_id:
        log.info("resuming MLflow run %s from %s", run_id, ckpt)
        tracker.continue_run(run_id)


# -- what every run is tagged with ------------------------------------------------------------------------
def git_commit() -> str:
    """The commit of the h2ovl source that runs (`-dirty` with uncommitted changes); outside a checkout
    (an installed package), the package's version."""
    source = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"h2ovl=={version('h2ovl')} (no git checkout)"
        except PackageNotFoundError:
            return "unknown"


def _preset_preprocessor(name: Any) -> dict[str, Any]:
    """The preprocessor a preset brings when the config names none."""
    from h2ovl.model.config import PRESETS, preset

    return preset(name).preprocessor if name in PRESETS else {}


def run_tags(config: dict[str, Any], experiment: str) -> dict[str, str]:
    """The tags every run carries, read from its resolved config."""
    model = config.get("model") or {}
    preprocessor = model.get("preprocessor") or _preset_preprocessor(model.get("preset"))
    kind = str(preprocessor.get("class_path", "unknown")).rsplit(".", 1)[-1]
    max_tiles = (preprocessor.get("init_args") or {}).get("max_tiles")
    return {
        "experiment": experiment,
        "preset": str(model.get("preset")),
        "preprocessor": kind if max_tiles is None else f"{kind}(max_tiles={max_tiles})",
        "pixel_shuffle": str(model.get("pixel_shuffle")),
        "seed": str(config.get("seed_everything")),
        "git_commit": git_commit(),
    }


class RunTracking(SaveConfigCallback):
    """LightningCLI's config saver, extended to everything that ties a run to its MLflow record: the resolved
    config goes to MLflow (artifact, flattened params, tags); the run id and the last step's metrics ride in
    each checkpoint, and a resumed run logs those metrics first; a run stopped by a signal ends KILLED."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unlogged: dict[str, Any] | None = None

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        tracker = trainer.logger
        if not isinstance(tracker, MLflowTracker):
            return
        config = self.parser.dump(self.config, skip_none=False, format="yaml")
        plain = self.config.as_dict()
        tracker.log_config(config, plain, run_tags(plain, tracker.experiment_name))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if not isinstance(trainer.logger, MLflowTracker):
            return
        if trainer.is_global_zero:
            checkpoint[RUN_ID_KEY] = trainer.logger.run_id
        # Read here, at a save, never per micro-batch: a training-time save comes from a checkpoint callback's
        # batch end, before Lightning sends this step's values on, so `callback_metrics` holds them.
        step = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(STEP_METRICS_PREFIX)}
        if trainer.training and step:
            # The step Lightning logs this batch's metrics at (its count of batches that stepped, not yet
            # advanced for this batch when callbacks save).
            checkpoint[STEP_METRICS_KEY] = {"step": trainer.global_step - 1, "metrics": step}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._unlogged = checkpoint.get(STEP_METRICS_KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._unlogged is not None and isinstance(trainer.logger, MLflowTracker) and trainer.is_global_zero:
            trainer.logger.log_metrics(self._unlogged["metrics"], step=self._unlogged["step"])
        self._unlogged = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and isinstance(trainer.logger, MLflowTracker):
            trainer.logger.mark_killed()
