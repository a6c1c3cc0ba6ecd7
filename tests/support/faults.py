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


class NonFiniteLossAt(L.Callback):
    """The loss of optimizer step `step` (1-based) becomes NaN: the projector's output is poisoned for that
    step's batches only (a bad batch), or from then on (`forever`: the weights themselves go bad)."""

    def __init__(self, step: int, forever: bool = False) -> None:
        self.step, self.forever, self._hook = step, forever, None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args, **kwargs) -> None:
        if trainer.global_step + 1 == self.step and self._hook is None:
            self._hook = pl_module.model.projector.register_forward_hook(
                lambda module, inputs, output: output * float("nan")
            )

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if self._hook is not None and not self.forever and trainer.global_step >= self.step:
            self._hook.remove()
            self._hook = None


class OutOfMemoryAt(L.Callback):
    """Raise the accelerator's out-of-memory error in optimizer step `step`, as CUDA would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args, **kwargs) -> None:
        import torch

        if trainer.global_step + 1 == self.step:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB total capacity)"
            )


class CountReduceScatter(L.Callback):
    """Counts the gradient reduce-scatters each micro-batch issues (FSDP2's collective), written by rank zero
    to `out` as JSON: [[batch_idx, count], ...]."""

    def __init__(self, out: str) -> None:
        self.out, self.counts, self._calls = out, [], 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import torch.distributed as dist

        for name in ("reduce_scatter_single", "reduce_scatter_tensor"):  # FSDP2 calls one, by release
            original = getattr(dist, name, None)
            if original is None:
                continue

            def counted(*args, _original=original, **kwargs):
                self._calls += 1
                return _original(*args, **kwargs)

            setattr(dist, name, counted)

    def on_train_batch_start(self, *args, **kwargs) -> None:
        self._calls = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.counts.append([batch_idx, self._calls])

    def on_train_end(self, trainer: L.Trainer, *args) -> None:
        import json

        if trainer.is_global_zero:
            with open(self.out, "w") as handle:
                json.dump(self.counts, handle)


class StopAt(L.Callback):
    """End the fit gracefully after `step` optimizer steps (its schedule still planned for `max_steps`), as a
    job reaching its time limit after saving would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class RecordPlacements(L.Callback):
    """Writes (rank zero, at the start of training) the device-mesh dimensions and the DTensor placements
    of the model's parameters to `out` as JSON: {"mesh": [...], "placements": [...]} (one per distinct)."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import json

        from torch.distributed.tensor import DTensor

        tensors = [p for p in pl_module.parameters() if isinstance(p, DTensor)]
        if trainer.is_global_zero:
            with open(self.out, "w") as handle:
                json.dump(
                    {
                        "mesh": list(tensors[0].device_mesh.mesh_dim_names or ()) if tensors else [],
                        "placements": sorted({str(p.placements) for p in tensors}),
                    },
                    handle,
                )


class SigkillRankAt(L.Callback):
    """SIGKILL the process of global rank `rank` once `step` optimizer steps are done (a node lost mid-run);
    the other ranks go on into the next step's collectives."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class HangRankAt(L.Callback):
    """The process of global rank `rank` stops answering (sleeps) once `step` optimizer steps are done, as a
    rank stuck on a dead file system or a wedged device would; the others wait in their next collective."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        import time

        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            time.sleep(3600)


class SlowSteps(L.Callback):
    """Each optimizer step takes at least `seconds` more, and `marker` is written once `at` steps are done:
    a run slow enough for a test to signal it mid-training, and the moment to do so."""

    def __init__(self, seconds: float, marker: str, at: int) -> None:
        self.seconds, self.marker, self.at = seconds, marker, at

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        import time
        from pathlib import Path

        time.sleep(self.seconds)
        if trainer.global_step >= self.at and trainer.is_global_zero:
            Path(self.marker).touch()
