"""Counting host syncs on a CPU: the tensor calls that, on a GPU, make the host wait for the device (reading
a value: `item`, `bool`, `int`, `tolist`; data-dependent shapes: `nonzero`, boolean-mask indexing,
`bincount`, `unique`, `masked_select`; copies to the host). On a CPU nothing waits, so a test counts the
calls instead: each is attributed to the first caller outside torch, so "ours" means code in h2ovl/."""

from __future__ import annotations

import collections
import traceback
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

PACKAGE = str(Path(__file__).resolve().parents[2] / "h2ovl")

_READS = {
    torch.Tensor.item,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.__index__,
    torch.Tensor.tolist,
    torch.Tensor.numpy,
    torch.Tensor.cpu,
    torch.Tensor.nonzero,
    torch.nonzero,
    torch.Tensor.bincount,
    torch.bincount,
    torch.Tensor.unique,
    torch.unique,
    torch.Tensor.masked_select,
    torch.masked_select,
}


def _boolean_index(args: tuple) -> bool:
    index = args[1] if len(args) > 1 else ()
    index = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)


class HostSyncs(TorchFunctionMode):
    """While active, counts host-syncing calls by "file:line" of their first caller outside torch."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in _READS or (func is torch.Tensor.__getitem__ and _boolean_index(args)):
            for frame in reversed(traceback.extract_stack()[:-1]):
                if "/torch/" not in frame.filename and not frame.filename.endswith("host_syncs.py"):
                    self.calls[f"{frame.filename}:{frame.lineno}"] += 1
                    break
        return func(*args, **(kwargs or {}))

    def ours(self) -> dict[str, int]:
        return {where: n for where, n in self.calls.items() if where.startswith(PACKAGE)}
