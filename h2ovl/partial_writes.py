"""Writing aside: a file or folder is written under a hidden name that carries its writer's pid, then
renamed into place, so a reader finds it whole or not at all (checkpoints, synthetic datasets).

A writer killed mid-way (SIGKILL leaves it no chance to clean up) leaves its partial behind, never read
but never removed either; the next writer into the same folder removes the partials whose writer is gone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PARTIAL_PREFIX = ".partial-"


def partial_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place (hidden, so never matches `*.ckpt`)."""
    return path.with_name(f".{path.name}{PARTIAL_PREFIX}{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_partials(directory: str | Path, pattern: str = "*") -> list[Path]:
    """Delete the partials in `directory` of names matching the glob `pattern` whose writer is gone
    (files and folders); returns what was removed."""
    removed = []
    for partial in sorted(Path(directory).glob(f".{pattern}{PARTIAL_PREFIX}*")):
        pid = partial.name.rsplit(PARTIAL_PREFIX, 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed
