"""`state.json`: each trial's status, run id, metric value, settings and, for failures, the error; rewritten
atomically after every change (the threads that run trials share it under a lock)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

FINISHED, FAILED, INTERRUPTED = "finished", "failed", "interrupted"


class SweepState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"trials": {}}

    def trial(self, name: str) -> dict[str, Any]:
        return self.data["trials"].get(name, {})

    def update(self, name: str | None = None, **fields: Any) -> None:
        with self.lock:
            target = self.data if name is None else self.data["trials"].setdefault(name, {})
            target.update(fields)
            self._write()

    def forget(self, name: str) -> None:
        with self.lock:
            self.data["trials"].pop(name, None)
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.data, indent=2))
        partial.replace(self.path)
