"""Bad-sample report: what each epoch skipped, per dataset and reason, summed over ranks, printed and logged."""

from __future__ import annotations

import logging
from collections import Counter

import lightning as L
import torch.distributed as dist

log = logging.getLogger(__name__)


def _gather(counts: Counter[str]) -> Counter[str]:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return counts
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, dict(counts))
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return total


class BadSampleReport(L.Callback):
    """At the end of each training epoch: the skips since the previous report, from the datamodule's
    tracker, as a log line and as `data/skipped/<dataset>/<reason>` metrics (cumulative)."""

    def __init__(self) -> None:
        self._reported: Counter[str] = Counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tracker = getattr(trainer.datamodule, "tracker", None)
        if tracker is None:
            return
        totals: Counter[str] = Counter()
        for dataset, reasons in tracker.report().items():
            totals.update({f"{dataset}/{reason}": n for reason, n in reasons.items()})
        totals = _gather(totals)
        new = totals - self._reported
        self._reported = totals
        if new and trainer.is_global_zero:
            lines = ", ".join(f"{key}: {n}" for key, n in sorted(new.items()))
            log.warning("epoch %d skipped %d bad samples (%s)", trainer.current_epoch, sum(new.values()), lines)
        if totals and trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_metrics(
                {f"data/skipped/{key}": float(n) for key, n in totals.items()}, step=trainer.global_step
            )

    def state_dict(self) -> dict:
        return {"reported": dict(self._reported)}

    def load_state_dict(self, state_dict: dict) -> None:
        self._reported = Counter(state_dict["reported"])
