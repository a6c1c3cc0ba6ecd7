"""Hugging Face datasets as training data, read by `datasets` memory-mapped: a `save_to_disk` folder, local
parquet files (a file, folder or glob: converted once into `datasets`' Arrow cache, then memory-mapped),
or a hub id (the library's cache; `HF_HUB_OFFLINE=1` respected).

A row is read by slicing the memory-mapped Arrow table: only that row's bytes are paged in, so random
access in a shuffled epoch costs one row, never the row group around it, and no process holds the
dataset in memory (loader workers share the page cache). Rows become records through
`h2ovl.data.schemas`; images stay encoded bytes until the preprocessor opens them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from h2ovl.data.meta import DatasetSpec, MetaError
from h2ovl.data.parquet_shards import parquet_files
from h2ovl.data.records import Record, to_record
from h2ovl.data.schemas import row_to_record
from h2ovl.preprocessing.image_io import ImageSource


def open_hf_dataset(
    name: str, split: str | None = None, config: str | None = None, cache_dir: str | None = None
) -> Any:
    """A `datasets.Dataset` for a save_to_disk folder, parquet files or a hub id."""
    import datasets

    path = Path(name).expanduser()
    try:
        if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
            loaded = datasets.load_from_disk(str(path), keep_in_memory=False)
        elif (
            path.suffix == ".parquet"
            or any(ch in name for ch in "*?[")
            or (path.is_dir() and any(path.rglob("*.parquet")))
        ):
            files = [str(f) for f in parquet_files(name)]
            loaded = datasets.load_dataset("parquet", data_files={"train": files}, split="train", cache_dir=cache_dir)
        elif path.exists():
            raise MetaError(f"hf_dataset {name!r}: neither a save_to_disk folder (state.json) nor parquet files")
        else:
            loaded = datasets.load_dataset(name, config, split=split or "train", cache_dir=cache_dir)
    except (FileNotFoundError, ConnectionError, ValueError) as error:
        if isinstance(error, MetaError):
            raise
        raise MetaError(f"hf_dataset {name!r}: cannot be loaded ({str(error).splitlines()[0]})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split is None or split not in loaded:
            raise MetaError(
                f"hf_dataset {name!r} holds the splits {sorted(loaded)}: set 'split' on the dataset in the meta file"
            )
        loaded = loaded[split]
    return loaded


class HFDatasetSource:
    """One Hugging Face dataset of a mixture (`hf_dataset` in the meta file)."""

    def __init__(self, spec: DatasetSpec, cache_dir: str | None = None) -> None:
        assert spec.hf_dataset is not None
        self.spec = spec
        self.root = Path(spec.root) if spec.root else Path(spec.hf_dataset).expanduser()
        self._dataset = open_hf_dataset(spec.hf_dataset, spec.split, spec.config, cache_dir)
        if len(self._dataset) == 0:
            raise MetaError(f"hf_dataset {spec.hf_dataset!r} (dataset {spec.name!r}) holds no rows")

    def __len__(self) -> int:
        return len(self._dataset)

    def load(self, index: int) -> tuple[Record, list[ImageSource]]:
        where = f"{self.spec.hf_dataset} row {index}"
        # The raw Arrow row (images as {bytes, path}, undecoded): one row paged in from the memory map.
        (row,) = self._dataset.data.fast_slice(index, 1).to_pylist()
        raw, images = row_to_record(row, where, self.root, self.spec.columns)
        return to_record(raw, where), images
