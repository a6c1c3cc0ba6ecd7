"""`h2ovl fit|validate|test|predict`: LightningCLI over `H2OVLModule` and `H2OVLDataModule`.

What this adds to LightningCLI:
- `--config` files are composed first (`extends:` fragments, overrides, `${...}` interpolation: see
  `h2ovl.training.compose`);
- every run gets `checkpoint` (ModelCheckpoint, saving `last.ckpt` under `<default_root_dir>/checkpoints`
  unless told otherwise), `best` (the best checkpoint by `best.monitor`, when set), `throughput` and the bad-sample report, an MLflow logger on the local SQLite
  store, atomic checkpoint files, and the config, tags, run id and exactly-once step metrics of `RunTracking`;
- `--ckpt_path` (a file, or `last`) continues the checkpoint's MLflow run.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentError
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from h2ovl.constants import LIGHTNING_SUBCOMMANDS, SWEEP_PID_ENV
from h2ovl.data.datamodule import H2OVLDataModule
from h2ovl.data.skip_report import BadSampleReport
from h2ovl.errors import CheckpointError, OutOfMemory, RankLost, UserError
from h2ovl.training.callbacks import (
    BestCheckpoint,
    Checkpoint,
    OutOfMemoryReport,
    StopLaunchedRanks,
    Throughput,
)
from h2ovl.training.checkpoint_io import AtomicCheckpointIO
from h2ovl.training.compose import ConfigError, expand_config_args
from h2ovl.training.generation import PredictionWriter
from h2ovl.training.module import H2OVLModule
from h2ovl.training.progress import StepProgress
from h2ovl.training.tracking import MLflowTracker, RunTracking, continue_tracked_run
from h2ovl.training.weights import allowed_globals, load_checkpoint

log = logging.getLogger(__name__)

DEFAULT_ROOT = "outputs/runs/h2ovl"


class H2OVLCLI(LightningCLI):
    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        super().__init__(
            H2OVLModule,
            H2OVLDataModule,
            save_config_callback=RunTracking,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            auto_configure_optimizers=False,
            args=list(args) if args is not None else None,
            run=run,
            # A value the parser refuses raises (one line, exit 2 in `run_lightning`) instead of printing
            # the whole usage of every key and exiting.
            parser_kwargs={
                "exit_on_error": False,
                **{name: {"exit_on_error": False} for name in LIGHTNING_SUBCOMMANDS},
            },
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.add_lightning_class_args(BestCheckpoint, "best")
        parser.add_lightning_class_args(Throughput, "throughput")
        parser.add_lightning_class_args(BadSampleReport, "bad_samples")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(OutOfMemoryReport, "out_of_memory")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                # One full-state write per save: `last.ckpt` alone. Lightning's default would also keep the newest
                # `epoch=..-step=..ckpt`, the same state written twice. `save_top_k: -1` keeps every step's file.
                "checkpoint.save_top_k": 0,
                # One last.ckpt, always the newest: Lightning's version counter would write last-v1.ckpt beside
                # a resumed run's older last.ckpt, which `--ckpt_path last` and `model.init.checkpoint` would then pick.
                "checkpoint.enable_version_counter": False,
                "trainer.default_root_dir": DEFAULT_ROOT,
                "trainer.logger": {"class_path": "h2ovl.training.tracking.MLflowTracker"},
            }
        )

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads hyperparameters out of `--ckpt_path` while parsing, before any hook: the file
        is checked first (exists, reads, holds only data), so a bad one is a named error, not a traceback."""
        if self.config.get("subcommand"):
            ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
            if ckpt_path not in (None, "last", "best", "hpc", "registry"):
                if not Path(ckpt_path).exists():
                    raise CheckpointError(
                        f"--ckpt_path {ckpt_path}: no such checkpoint file (or `last` to resume from the run's last.ckpt)"
                    )
                load_checkpoint(ckpt_path)
        super()._parse_ckpt_path()

    def instantiate_classes(self) -> None:
        """A value our classes or Lightning's refuse while being built from the config is the user's to fix."""
        try:
            super().instantiate_classes()
        except (ValueError, MisconfigurationException) as err:
            if isinstance(err, UserError):  # already names what is wrong
                raise
            hint = ""
            if "gpu" in str(err).lower() or "cuda" in str(err).lower():
                hint = (
                    "; this config asks for GPUs: on a CPU machine add --trainer.accelerator cpu "
                    "--trainer.precision 32-true --trainer.strategy auto --trainer.devices 1"
                )
            raise ConfigError(f"the configuration is refused: {err}{hint}") from err
        # The data side gets the model's processor, and accumulation follows the global batch: both here,
        # once, so neither the data module nor the model reaches into the other or the trainer.
        self.datamodule.bind(self.model.processor)
        self.trainer.accumulate_grad_batches = self.datamodule.accumulation(
            self.trainer.world_size, self.trainer.accumulate_grad_batches
        )
        self._check_settings_agree()

    def _check_settings_agree(self) -> None:
        """Settings that each parse but cannot work together, caught before the first step."""
        best = next((c for c in self.trainer.callbacks if isinstance(c, BestCheckpoint)), None)
        monitor = best.monitor if best is not None else None
        if monitor and monitor.startswith("val/") and monitor != "val/loss" and self.model.val_scorer is None:
            raise ConfigError(
                f"best.monitor={monitor!r} is a generation metric, but model.val_generation.samples is 0, so "
                "validation generates nothing: set model.val_generation.samples (e.g. 64) or best.monitor: val/loss"
            )
        generation = self.model.val_generation
        wanted = max(generation.samples, generation.final_samples or 0)
        limit = self.trainer.limit_val_batches
        if wanted and isinstance(limit, int) and limit > 0:  # 0: no validation at all
            reached = limit * self.datamodule.batching.val_rows * self.trainer.world_size
            # A smoke test's small limit is fine; a figure on fewer samples than asked is not silent.
            if reached < wanted:
                log.warning(
                    "model.val_generation asks for %d answered validation samples, but validation stops after "
                    "trainer.limit_val_batches=%d batches of %d samples (data.batching.val_batch_size): %d are scored (1.0 scores "
                    "every batch)",
                    wanted,
                    limit,
                    self.datamodule.batching.val_rows,
                    reached,
                )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if "weights_only" in config and config.weights_only is None:
            config.weights_only = True  # a checkpoint is data: never unpickle code from one
        root = Path(config.trainer.default_root_dir or ".")
        for callback in (config.checkpoint, config.best):
            if callback.dirpath is None:
                callback.dirpath = str(root / "checkpoints")
        logger = config.trainer.logger
        if (
            getattr(logger, "class_path", None) == f"{MLflowTracker.__module__}.{MLflowTracker.__name__}"
            and logger.init_args.save_dir is None
        ):
            logger.init_args.save_dir = str(root)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer = super().instantiate_trainer(**kwargs)
        for index, callback in enumerate(trainer.callbacks):
            if type(callback) in (TQDMProgressBar, RichProgressBar):  # Lightning's default bars
                trainer.callbacks[index] = StepProgress()
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # a configured plugin is kept
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        trainer.callbacks.append(StopLaunchedRanks())
        return trainer

    # What is done with a checkpoint (resumed training, validation, test, prediction) lands in the run that
    # trained it.
    def before_fit(self) -> None:
        self._resume_from_requeue_checkpoint()
        self._continue_tracked_run()

    def _resume_from_requeue_checkpoint(self) -> None:
        """A job SLURM requeued (Lightning's auto-requeue saved `hpc_ckpt_<n>.ckpt` on the pre-timeout signal)
        resumes from that checkpoint when it is newer than what `--ckpt_path` names (nothing, or `last`):
        the command that restarts is the one first submitted. Named explicitly, it is checked and continues
        its MLflow run like any other."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") not in (None, "last") or not SLURMEnvironment.detect():
            return
        requeued = requeue_checkpoint(Path(self.trainer.default_root_dir))
        named = resolve_ckpt_path(config.get("ckpt_path"), self.trainer)
        if requeued is not None and (named is None or requeued.stat().st_mtime >= named.stat().st_mtime):
            log.info("resuming from %s, saved when SLURM requeued this job", requeued)
            config["ckpt_path"] = str(requeued)

    def before_validate(self) -> None:
        self._continue_tracked_run()

    def before_test(self) -> None:
        self._continue_tracked_run()

    def before_predict(self) -> None:
        self._continue_tracked_run()

    def _continue_tracked_run(self) -> None:
        ckpt = resolve_ckpt_path(self.config_init[self.subcommand].get("ckpt_path"), self.trainer)
        continue_tracked_run(self.trainer.logger, ckpt, self.subcommand)


def requeue_checkpoint(root: Path) -> Path | None:
    """The newest `hpc_ckpt_<n>.ckpt` under `root` (the trainer's default_root_dir, where Lightning's SLURM
    auto-requeue writes them, numbering up), or None."""
    numbered = [
        (int(match.group(1)), path)
        for path in root.glob("hpc_ckpt_*.ckpt")
        if (match := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", path.name))
    ]
    return max(numbered)[1] if numbered else None


def resolve_ckpt_path(ckpt_path: str | None, trainer: Any) -> Path | None:
    """The checkpoint `--ckpt_path` names (a file, or a sharded save's folder): a path, or `last` (`last.ckpt` in the checkpoint dir; None
    when there is none yet, and Lightning starts afresh). Lightning's other keywords are left to it."""
    if not ckpt_path or ckpt_path in ("best", "hpc", "registry"):
        return None
    if ckpt_path == "last":
        for callback in trainer.checkpoint_callbacks:
            if callback.dirpath and (Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}.ckpt").exists():
                return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}.ckpt"
        return None
    path = Path(ckpt_path)
    if not path.exists():  # a file, or a sharded save's folder
        raise CheckpointError(
            f"--ckpt_path {path}: no such checkpoint file (or `last` to resume from the run's last.ckpt)"
        )
    return path


class ParseOnlyCLI(H2OVLCLI):
    """The fit parser, every check it makes, and nothing instantiated."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def check_fit_config(config: dict[str, Any], name: str) -> None:
    """Parse a composed fit config (the keys of a `--config` file) exactly as `h2ovl fit` would: unknown
    keys, wrong types and bad class paths raise `ConfigError` naming `name`."""
    import contextlib
    import io
    import tempfile

    import yaml

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(config, file)
        file.flush()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                ParseOnlyCLI(args=["--config", file.name], run=False)
        except ArgumentError as error:
            raise ConfigError(f"{name}: {error}") from None


def watch_parent() -> None:
    """In a sweep trial: stop with SIGTERM (the run ends after its step, as any SIGTERM'd fit) once the
    sweep that started this process is gone, so a sweep killed outright leaves no trial behind. Only the
    sweep's direct child watches: DDP ranks it spawns have that child as their parent."""
    sweep_pid = os.environ.get(SWEEP_PID_ENV)
    if not sweep_pid or os.getppid() != int(sweep_pid):
        return

    def watch() -> None:
        while os.getppid() == int(sweep_pid):
            time.sleep(2.0)
        log.warning("the sweep (pid %s) is gone: stopping this trial", sweep_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="h2ovl-sweep-watch", daemon=True).start()


def run_lightning(argv: Sequence[str]) -> None:
    watch_parent()
    # Lightning unpickles checkpoints with weights_only=True (set above): our hyperparameter classes are the
    # only globals they may name.
    torch.serialization.add_safe_globals(allowed_globals())
    with warnings.catch_warnings():
        # LightningCLI warns when given `args` (we pass the composed config so `extends:` works) and
        # prints them, which would dump the whole composed YAML on every command.
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
        try:
            H2OVLCLI(args=expand_config_args(list(argv)))
        except ArgumentError as error:
            raise ConfigError(f"{error} (see h2ovl {argv[0]} --help)") from None
        except torch.OutOfMemoryError as error:
            hint = getattr(error, "h2ovl_hint", None)  # noted by OutOfMemoryReport while the run was still in reach
            if hint is None:
                raise
            raise OutOfMemory(hint) from error
        except RuntimeError as error:
            if not lost_another_rank(error):
                raise
            raise RankLost(
                f"rank {rank_zero_only.rank} lost contact with another process of the run, which died or "
                f"stopped answering ({str(error).strip().splitlines()[0][:200]}); every process has stopped. "
                "Resume with --ckpt_path last, on the same or another number of processes; how long a rank "
                "waits for a silent one is trainer.strategy.init_args.timeout (default 0:30:00)"
            ) from error


#: What the collective backends say when a peer process is gone (gloo: its socket closed; NCCL and gloo: the
#: collective timed out); torch raises them as plain RuntimeErrors (DistBackendError, a subclass, for NCCL).
_PEER_GONE = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "Timed out waiting",
    "Application timeout caused pair closure",
    "Watchdog caught collective operation timeout",
    "NCCL communicator was aborted",
)


def lost_another_rank(error: BaseException) -> bool:
    """Whether `error` is a collective that failed because another rank died or went silent."""
    return isinstance(error, torch.distributed.DistBackendError) or any(sign in str(error) for sign in _PEER_GONE)
