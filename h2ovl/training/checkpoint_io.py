"""Atomic checkpoint files: a checkpoint either exists whole under its name or not at all.

Lightning's own `_atomic_save` serialises into memory (a second copy of the whole checkpoint) and lets
fsspec write it via a temporary file in the *system* temp directory, which is a copy, not a rename, when
that lies on another filesystem (the usual case on clusters). Here the bytes stream into a hidden partial
file next to the target, are fsynced, and `os.replace` renames it: atomic on POSIX filesystems.
Remote URLs (s3://, gs://, ...) keep Lightning's path, where object stores publish whole objects anyway.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from fsspec.implementations.local import LocalFileSystem


def partial_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place (never matches `*.ckpt`)."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(str(path).removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(path)
        try:
            with partial.open("wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
