"""Atomic checkpoint files: a checkpoint either exists whole under its name or not at all.

Lightning's own `_atomic_save` serialises into memory (a second copy of the whole checkpoint) and lets
fsspec write it via a temporary file in the *system* temp directory, which is a copy, not a rename, when
that lies on another filesystem (the usual case on clusters). Here the bytes stream into a hidden partial
file next to the target, are fsynced, and `os.replace` renames it: atomic on POSIX filesystems.
Remote URLs (s3://, gs://, ...) keep Lightning's path, where object stores publish whole objects anyway.

A disk that fills up mid-write ends the run with a one-line `CheckpointError` saying so (torch reports it
as "unexpected pos" from its zip writer); the partial file is removed and the previous checkpoint under
the name is untouched. Partial files left by a killed process (SIGKILL gives no chance to clean up) are
removed when a run starts (`h2ovl.partial_writes`).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from h2ovl.errors import CheckpointError
from h2ovl.partial_writes import partial_path


def _out_of_space(error: BaseException) -> bool:
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or any(
        sign in str(error) for sign in ("unexpected pos", "No space left", "file write failed")
    )


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
        except (OSError, RuntimeError) as error:
            if not _out_of_space(error):
                raise
            free = shutil.disk_usage(path.parent).free / 2**20
            kept = "the previous one under that name is intact" if path.exists() else "no earlier file had that name"
            raise CheckpointError(
                f"{path}: the disk filled up while writing this checkpoint ({free:.0f} MiB free in "
                f"{path.parent}); {kept}. Free space and resume with --ckpt_path last"
            ) from None
        finally:
            partial.unlink(missing_ok=True)
