"""The sweep's synthetic data, written ahead of the trials that read it.

A trial whose synthetic data is missing writes it before its first step (`SyntheticData.ensure`), on the
sweep's critical path: the CPU demo's four datasets take ~30 s to write, each while every trial after it
waits (measured: docs/results.md). The sweep knows every trial's data before it starts any, so it writes
them in one background thread, in the order the trials need them, while earlier trials train; a trial
starts once its own data is in place. Real data (`data.train` set) is left alone.

A failure here is not the sweep's to report: the trial then writes (or fails on) its data itself, with
the error in its own log, exactly as without this module.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from h2ovl.data.datamodule import SyntheticData

log = logging.getLogger(__name__)


def synthetic_data(config: dict[str, Any]) -> SyntheticData | None:
    """The synthetic data a trial's resolved config trains on; None when it names its own (`data.train`)."""
    data = config.get("data") or {}
    if data.get("train") is not None:
        return None
    return SyntheticData(**(data.get("synthetic") or {}))


class DataAhead:
    """Writes each distinct synthetic dataset of `configs` (trial configs, in run order) in a daemon
    thread; `wait_for(config)` blocks until that config's data is written. A daemon thread, so a stopped
    sweep does not wait for it: a dataset cut short is a `.partial-<pid>` folder, never read (`ensure`
    renames a dataset into place only once it is whole)."""

    def __init__(self, configs: Iterable[dict[str, Any]]) -> None:
        self._pending: dict[Path, Future[None]] = {}
        datasets = []
        for config in configs:
            data = synthetic_data(config)
            if data is not None and data.folder not in self._pending:
                self._pending[data.folder] = Future()
                datasets.append(data)
        self._thread = threading.Thread(target=self._write, args=(datasets,), name="h2ovl-data-ahead", daemon=True)
        self._thread.start()

    def _write(self, datasets: list[SyntheticData]) -> None:
        for data in datasets:
            future = self._pending[data.folder]
            try:
                data.ensure()
            except Exception as error:  # noqa: BLE001 - the trial meets (and reports) it again
                log.debug("writing %s ahead failed (its trial will write it): %s", data.folder, error)
            future.set_result(None)

    def wait_for(self, config: dict[str, Any]) -> None:
        """Blocks until the synthetic data of `config` is written (or its writing failed); returns at
        once for data this sweep does not write ahead."""
        data = synthetic_data(config)
        future = self._pending.get(data.folder) if data is not None else None
        if future is not None:
            future.result()
