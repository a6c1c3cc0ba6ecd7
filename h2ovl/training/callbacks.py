"""Callbacks the CLI adds to every run: throughput (samples/s, tokens/s, FLOPs, MFU), the periodic, last and
best checkpoints, and the one-line reports of running out of memory and of a failed node's ranks. (The
tracking callback lives with its logger in `h2ovl.training.tracking`.)"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ThroughputMonitor
from lightning.pytorch.callbacks.throughput_monitor import _plugin_to_compute_dtype
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities import rank_zero_only

from h2ovl.errors import SettingError
from h2ovl.partial_writes import remove_stale_partials
from h2ovl.training.flops import dense_peak_flops

log = logging.getLogger(__name__)


def _samples(batch: dict) -> int:
    return len(batch["ids"])


def _real_tokens(batch: dict) -> int:
    return int(batch["attention_mask"].sum())


class Throughput(ThroughputMonitor):
    """Lightning's `ThroughputMonitor` over our batches: `train/device/samples_per_sec`,
    `train/device/items_per_sec` (= real, non-pad tokens/s), `train/device/flops_per_sec` and, on devices
    with a known peak (GPUs), `train/device/mfu`; with several devices also the global `train/...` rates.
    Each is averaged over the last `window_size` batches. Samples/s also goes to the progress bar."""

    def __init__(self, window_size: int = 20) -> None:
        if window_size < 2:  # rates are differences between the window's first and last batch
            raise SettingError(f"throughput.window_size must be at least 2, got {window_size}")
        super().__init__(batch_size_fn=_samples, length_fn=_real_tokens, window_size=window_size)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # MFU against the dense peak, which Lightning's table lacks for the H200 (`dense_peak_flops`).
        device = trainer.strategy.root_device
        if device.type == "cuda":
            self.available_flops = dense_peak_flops(device, _plugin_to_compute_dtype(trainer.precision_plugin))
            for throughput in self._throughputs.values():
                throughput.available_flops = self.available_flops

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        computed = self._throughputs[RunningStage.TRAINING].compute()
        rate = computed.get("samples_per_sec", computed.get("device/samples_per_sec"))
        if rate is not None:
            pl_module.log("samples/s", rate, prog_bar=True, logger=False, batch_size=1)


class Checkpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint`, plus: partial files of a killed writer are removed at start-up, and
    `last.ckpt` is also written when training ends between periodic saves (a run stopping at `max_steps` = 900 with saves every 240 steps would otherwise leave step 720 as
    "last", and a next stage's `model.init.checkpoint` would silently lose 180 steps)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath and Path(self.dirpath).is_dir():
            for partial in remove_stale_partials(self.dirpath, "*.ckpt"):
                log.info("removed %s, left by a process killed while writing a checkpoint", partial)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and self._last_global_step_saved != trainer.global_step and not trainer.sanity_checking:
            # Lightning's own last-checkpoint routine (private, but it keeps the naming and the link logic).
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class BestCheckpoint(ModelCheckpoint):
    """The best `save_top_k` checkpoints by a validation metric (`best-<step>.ckpt`), ranked right after each
    validation run; off while `monitor` is None. Separate from the periodic `checkpoint` callback, which
    saves during the training step, before that step's validation has produced the metric.

    Args:
        monitor: a logged metric, e.g. `val/loss`, `val/cer/cer`, `val/kie/score`.
        mode: "min" or "max".
    """

    def __init__(
        self,
        monitor: str | None = None,
        mode: str = "min",
        save_top_k: int = 1,
        dirpath: str | None = None,
        filename: str = "best-{step}",
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            mode=mode,
            save_top_k=save_top_k,
            save_last=False,
            auto_insert_metric_name=False,
            save_on_train_epoch_end=False,
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is not None:
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is not None:
            super().on_train_epoch_end(trainer, pl_module)


class OutOfMemoryReport(L.Callback):
    """On running out of accelerator memory, the exception is noted with what the step held and the settings
    that decide it (micro-batch, tile budget, packing, activation checkpointing), so `h2ovl fit` ends in
    one line a user can act on instead of a CUDA traceback."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, torch.OutOfMemoryError):
            return
        batching = getattr(trainer.datamodule, "batching", None)
        preprocessor = getattr(pl_module, "preprocessor", None)
        tiles = getattr(preprocessor, "max_tiles", None)
        knobs = [
            f"data.batching.batch_size={getattr(batching, 'batch_size', '?')} (micro-batch; keep the global batch "
            "with data.batching.global_batch_size)",
            f"tile budget max_tiles={tiles} (model.preprocessor.init_args.max_tiles)"
            if tiles
            else "the preprocessor's tile budget",
            f"model.gradient_checkpointing={pl_module.hparams.get('gradient_checkpointing')}",
        ]
        if getattr(batching, "pack_tokens", None):
            knobs.append(
                f"data.batching.pack_tokens={batching.pack_tokens} / data.batching.pack_tiles={batching.pack_tiles}"
            )
        exception.h2ovl_hint = (
            f"out of accelerator memory at optimizer step {trainer.global_step + 1}; what a step needs is "
            f"set by {'; '.join(knobs)}: lower the first two or turn checkpointing on"
        )


class StopLaunchedRanks(L.Callback):
    """When a run fails on the node's first process, the ranks it launched are killed with it. Lightning's
    launcher starts ranks 1..N-1 of a node as child processes of rank 0 and kills them on Ctrl-C only: after
    any other error they would wait in their next collective until its timeout, or forever in a step that
    never reaches one, holding their GPUs and the job."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

        launcher = trainer.strategy.launcher
        if isinstance(launcher, _SubprocessScriptLauncher) and getattr(launcher, "procs", None):
            launcher.kill(signal.SIGKILL)
