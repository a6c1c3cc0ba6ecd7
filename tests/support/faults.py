"""Faults injected into real training runs."""

from __future__ import annotations

import os
import signal

import lightning as L


class SigkillAt(L.Callback):
    """SIGKILL this process (no cleanup, no final checkpoint) once `step` optimizer steps are done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SigkillAfterSaving(L.Callback):
    """At `step`: write `last.ckpt` (as the checkpoint callback does at the end of a batch), then SIGKILL
    before Lightning sends that step's metrics to the logger, the window where they could be lost."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(f"{trainer.checkpoint_callback.dirpath}/last.ckpt")
            os.kill(os.getpid(), signal.SIGKILL)


class SigtermAt(L.Callback):
    """SIGTERM this process (as a scheduler preempting a job) once `step` optimizer steps are done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
