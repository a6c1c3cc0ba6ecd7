"""Reading the weights of a Lightning checkpoint as data, never as code.

`init_from` and `evaluate --ckpt` need only a checkpoint's `state_dict`. The file is memory-mapped (a
2B checkpoint with its optimizer state is ~26 GB; only the model tensors are paged in) and unpickled
with `weights_only=True`, so a planted file cannot run code: the only classes allowed beyond tensors
and containers are the plain dataclasses our own hyperparameters hold.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


def _allowed_globals() -> list[type]:
    from h2ovl.training.module import Trainable, ValGeneration

    return [Trainable, ValGeneration]


def load_checkpoint(path: str | Path) -> dict:
    """A whole Lightning checkpoint, memory-mapped, unpickled as data only."""
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0]
        raise ValueError(f"{path}: refusing to load a checkpoint that holds more than weights and plain data ({reason})") from None
    except (RuntimeError, EOFError) as error:
        raise ValueError(f"{path}: not a readable checkpoint ({error})") from None


def load_checkpoint_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning checkpoint."""
    checkpoint = load_checkpoint(path)
    if "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return checkpoint["state_dict"]
