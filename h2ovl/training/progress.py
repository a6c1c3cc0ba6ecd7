"""Training progress a researcher can follow: optimizer steps against `max_steps`, with a rate and an ETA.

On the endless iterable data of a run, Lightning's per-epoch bar reads "Epoch 0/-2" and "50/9": here the
bar counts optimizer steps to the run's end: `trainer.max_steps`, or, for a run bounded by epochs (every
paper recipe), Lightning's `estimated_stepping_batches` (epochs x steps per epoch, which the data module
knows or estimates from its index). Without a terminal (a log file, a SLURM job, a sweep trial), a bar is
only printed at the end, so a line is logged every `log_every` steps instead:
`step 120/500 (24%), 2.31 steps/s, ETA 2m44s, train/loss 1.204`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """`2h05m`, `2m44s`, `9s`."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class StepProgress(TQDMProgressBar):
    """Lightning's tqdm bar, counting optimizer steps to `max_steps` when the run is bounded by steps.

    Args:
        log_every: without a terminal, log a progress line every this many steps (None: a twentieth of
            `max_steps`, at least 1).
    """

    def __init__(self, refresh_rate: int = 1, log_every: int | None = None, interactive: bool | None = None) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.log_every = log_every
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._started: tuple[float, int] | None = None

    @staticmethod
    def total_steps(trainer: L.Trainer) -> int | None:
        """The optimizer steps the run will take: `max_steps`, else the epochs' estimate (None: unknown)."""
        if trainer.max_steps is not None and trainer.max_steps > 0:
            return trainer.max_steps
        estimated = trainer.estimated_stepping_batches
        return int(estimated) if estimated not in (None, float("inf")) and estimated > 0 else None

    def _by_steps(self, trainer: L.Trainer) -> bool:
        return self.total_steps(trainer) is not None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.interactive:
            self.disable()
        super().on_train_start(trainer, pl_module)
        self._started = (time.monotonic(), trainer.global_step)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        if self._by_steps(trainer) and self.train_progress_bar is not None:
            self.train_progress_bar.reset(total=self.total_steps(trainer))
            self.train_progress_bar.n = trainer.global_step
            self.train_progress_bar.set_description("train")
            self.train_progress_bar.refresh()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._by_steps(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        step = trainer.global_step
        if self.train_progress_bar is not None and not self.train_progress_bar.disable:
            self.train_progress_bar.n = step
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            self.train_progress_bar.refresh()
        every = self.log_every or max(1, self.total_steps(trainer) // 20)
        if not self.interactive and trainer.is_global_zero and step % every == 0 and self._started is not None:
            log.info(self.line(trainer, pl_module))

    def line(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        """`step 120/500 (24%), 2.31 steps/s, ETA 2m44s, train/loss 1.204`."""
        step, total = trainer.global_step, self.total_steps(trainer)
        began, first = self._started or (time.monotonic(), step)
        rate = (step - first) / max(time.monotonic() - began, 1e-9)
        eta = duration((total - step) / rate) if rate > 0 else "?"
        loss = trainer.callback_metrics.get("train/loss")
        shown = f", train/loss {float(loss):.4g}" if loss is not None else ""
        return f"step {step}/{total} ({100 * step / total:.0f}%), {rate:.2f} steps/s, ETA {eta}{shown}"
