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
