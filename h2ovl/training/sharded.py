"""Sharded checkpoints read whole, as data.

Under FSDP2 with `save_distributed_checkpoint: true`, Lightning writes a checkpoint as a folder in
PyTorch's distributed checkpoint (DCP) format: each rank's shards, DCP's `.metadata` index, and
Lightning's `meta.pt` (step, loops, callbacks, hyperparameters). A resume on any number of processes
reads it through Lightning, which reshards it. Everything that reads one checkpoint in one process
(`model.init.checkpoint`, `h2ovl evaluate --ckpt`, `h2ovl export`, `h2ovl checkpoint consolidate`) reads it
here, into the same dictionary a full checkpoint file holds.

Files are data: DCP unpickles `.metadata` with plain `pickle` (any class, code included), so it is read
here by an unpickler that admits only DCP's own metadata classes, torch dtypes and sizes, and paths; the
tensors themselves are loaded with `weights_only=True` by DCP, and `meta.pt` like any checkpoint.
Reading a whole checkpoint in one process has no public DCP call (`format_utils.dcp_to_torch_save` goes
through a file): this module holds the one private one, `_load_state_dict` with its empty-state planner,
and `tests/test_sharded_checkpoints.py` pins it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from h2ovl.errors import CheckpointError

#: DCP's index of a checkpoint folder, and Lightning's file of everything but tensors beside it.
DCP_INDEX = ".metadata"
LIGHTNING_META = "meta.pt"


def is_sharded_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a checkpoint folder in DCP's format (as Lightning's sharded saves write)."""
    return Path(path).is_dir() and (Path(path) / DCP_INDEX).is_file()


class _MetadataUnpickler(pickle.Unpickler):
    """Admits only the globals a DCP index names: its metadata classes, torch dtypes, `torch.Size`, the
    layout lookup, and paths (`storage_meta.checkpoint_id`)."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = (
            module == "torch.distributed.checkpoint.metadata"
            or (module == "torch.distributed.checkpoint.filesystem" and name == "_StorageInfo")
            or (module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)))
            or (module == "torch.serialization" and name == "_get_layout")
            or (
                module == "pathlib" and name in ("Path", "PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath")
            )
            or (module == "collections" and name == "OrderedDict")
        )
        if not allowed:
            raise pickle.UnpicklingError(f"unsupported global: {module}.{name}")
        return super().find_class(module, name)


class SafeReader(FileSystemReader):
    """DCP's file reader with its index unpickled as data only."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = Path(self.path) / DCP_INDEX
        try:
            with path.open("rb") as handle:
                metadata = _MetadataUnpickler(handle).load()
        except pickle.UnpicklingError as error:
            raise CheckpointError(
                f"{path}: refusing a sharded checkpoint whose index holds more than checkpoint metadata ({error})"
            ) from None
        except (OSError, EOFError, AttributeError, ValueError) as error:
            raise CheckpointError(f"{path}: not a readable sharded checkpoint index ({error})") from None
        if not isinstance(metadata, Metadata):
            raise CheckpointError(f"{path}: not a sharded checkpoint index (holds a {type(metadata).__name__})")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def load_sharded_checkpoint(path: str | Path, meta_loader: Any) -> dict[str, Any]:
    """The whole checkpoint in a DCP folder, in one process: Lightning's `meta.pt` (read by `meta_loader`,
    the full-file reader, so it is held to the same rules) with `state_dict` and `optimizer_states` from
    the shards, each tensor whole and on the CPU."""
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    path = Path(path)
    checkpoint = meta_loader(path / LIGHTNING_META) if (path / LIGHTNING_META).is_file() else {}
    tensors: dict[str, Any] = {}
    reader = SafeReader(path)
    reader.read_metadata()  # the index first, so a refused one is named as such (DCP wraps what it raises)
    try:
        _load_state_dict(tensors, storage_reader=reader, planner=_EmptyStateDictLoadPlanner(), no_dist=True)
    except Exception as error:  # noqa: BLE001 - the folder is data: whatever DCP trips on, the folder is bad
        raise CheckpointError(f"{path}: not a readable sharded checkpoint ({str(error).strip()[:200]})") from None
    if "state_dict" not in tensors:
        raise CheckpointError(f"{path}: a sharded checkpoint without model weights ('state_dict')")
    checkpoint["state_dict"] = tensors.pop("state_dict")
    optimizers = sorted((int(key.removeprefix("optimizer_")), key) for key in tensors if key.startswith("optimizer_"))
    if optimizers:
        checkpoint["optimizer_states"] = [tensors.pop(key) for _, key in optimizers]
    checkpoint.update(tensors)
    return checkpoint
