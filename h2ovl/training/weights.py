"""Reading the weights of a Lightning checkpoint as data, never as code.

`model.init.checkpoint` and `evaluate --ckpt` need only a checkpoint's `state_dict`. The file is memory-mapped (a
2B checkpoint with its optimizer state is ~26 GB; only the model tensors are paged in) and unpickled
with `weights_only=True`, so a planted file cannot run code: the only classes allowed beyond tensors
and containers are the plain dataclasses our own hyperparameters hold.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from h2ovl.errors import CheckpointError
from h2ovl.training.sharded import LIGHTNING_META, is_sharded_checkpoint, load_sharded_checkpoint

_ALLOWED: list[type] = []


def allow_in_checkpoints(*classes: type) -> None:
    """Declare plain classes a checkpoint may hold (the training module's hyperparameter dataclasses):
    the modules that define them register them, so this reader imports none of them."""
    _ALLOWED.extend(c for c in classes if c not in _ALLOWED)


def allowed_globals() -> list[type]:
    """The classes beyond tensors and containers that our checkpoints may hold (`weights_only` loads)."""
    return list(_ALLOWED)


def load_checkpoint(path: str | Path) -> dict:
    """A whole Lightning checkpoint, memory-mapped, unpickled as data only: a file, or the folder of a
    sharded save (`h2ovl.training.sharded`, read whole). Raises `CheckpointError` for a missing, truncated
    or foreign one, and for one that would need code to unpickle."""
    path = Path(path)
    if is_sharded_checkpoint(path):
        return load_sharded_checkpoint(path, load_checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as error:
        named = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(error), re.IGNORECASE)
        if named:
            raise CheckpointError(
                f"{path}: refusing to load a checkpoint that holds more than weights and plain data "
                f"(it names {named.group(1)}, which unpickling would run or build)"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(error)})") from None
    except Exception as error:  # noqa: BLE001 - the file is data: whatever torch.load trips on, the file is bad
        raise CheckpointError(
            f"{path}: not a readable checkpoint, truncated or not written by torch.save ({_first_line(error)})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (holds a {type(checkpoint).__name__})")
    return checkpoint


def load_checkpoint_meta(path: str | Path) -> dict:
    """A checkpoint's step, run id, hyperparameters and loop state, with its tensors left unread: a file
    memory-mapped, a sharded save's `meta.pt` alone (its shards are checked only when the weights are read)."""
    path = Path(path)
    if is_sharded_checkpoint(path):
        meta = path / LIGHTNING_META
        return load_checkpoint(meta) if meta.is_file() else {}
    return load_checkpoint(path)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def load_checkpoint_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning checkpoint."""
    checkpoint = load_checkpoint(path)
    if "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return checkpoint["state_dict"]
