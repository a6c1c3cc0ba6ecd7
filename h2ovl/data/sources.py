"""Random access to the records of one dataset: local annotation files or LitData-optimized chunks here;
Hugging Face datasets (`hf_source`) and WebDataset shards (`webdataset_source`) in modules of their own.

A jsonl file is indexed once by byte offset (nothing is parsed until a record is needed), so start-up
stays cheap on millions of lines and a malformed line only costs its own sample.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Protocol

from h2ovl.data.benchmarks import open_benchmark
from h2ovl.data.hf_source import HFDatasetSource
from h2ovl.data.line_index import line_index, llava_as_jsonl
from h2ovl.data.meta import DatasetSpec, MetaError, load_mixture
from h2ovl.data.records import BadSample, Record, parse_line, to_record
from h2ovl.data.webdataset_source import WebDatasetSource
from h2ovl.preprocessing.image_io import ImageSource


class RecordSource(Protocol):
    spec: DatasetSpec

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[Record, list[ImageSource]]:
        """The validated record and its image sources (paths or bytes); raises `BadSample`."""


class AnnotationSource:
    """Records of a `.jsonl` file (one per non-blank line) or a LLaVA `.json` list, images under `root`.

    The file is read through its cached line index (`h2ovl.data.line_index`: 16 bytes a record, memory-
    mapped, shared by every process); a LLaVA list is read through its JSON Lines conversion, made once.
    """

    def __init__(self, spec: DatasetSpec) -> None:
        assert spec.annotation is not None and spec.root is not None
        self.spec = spec
        self.path = Path(spec.annotation)
        self.root = Path(spec.root)
        self._llava = self.path.suffix != ".jsonl"
        self._lines = llava_as_jsonl(self.path, MetaError) if self._llava else self.path
        self._index = line_index(self._lines)
        if len(self) == 0:
            raise MetaError(f"{self.path}: dataset {spec.name!r} holds no records (an empty or blank annotation file)")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_index": None}  # each process maps the cached index itself, never a copy

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._index = line_index(self._lines)

    def __len__(self) -> int:
        return len(self._index)

    def where(self, index: int) -> str:
        if self._llava:
            return f"{self.path}[{index}]"
        return f"{self.path}:{int(self._index[index, 1])}"

    def _line(self, index: int) -> bytes:
        with self._lines.open("rb") as file:
            file.seek(int(self._index[index, 0]))
            return file.readline()

    def raw_text(self, index: int) -> str:
        """The record as JSON text, as stored."""
        return self._line(index).decode("utf-8", errors="replace")

    def load(self, index: int) -> tuple[Record, list[ImageSource]]:
        where = self.where(index)
        raw = parse_line(self._line(index), where)
        record = to_record(raw, where)
        return record, [self._image_path(image, where) for image in record.images]

    def _image_path(self, image: str, where: str) -> Path:
        """`root / image` (an absolute path stays itself, as InternVL's joining leaves it); with
        `allow_outside_root: false`, a path that is absolute or climbs out of the root (judged on the text,
        so a root whose folders are symlinks still works) is refused."""
        if not self.spec.allow_outside_root:
            normal = os.path.normpath(image)
            if os.path.isabs(image) or normal == ".." or normal.startswith(".." + os.sep):
                raise BadSample(
                    "image_outside_root",
                    where,
                    f"{image!r} is outside {self.root}, and the dataset sets allow_outside_root: false",
                )
        return self.root / image


class OptimizedSource:
    """Records written by `h2ovl data optimize`: LitData chunks (local folder or object storage URL),
    each item holding the record's JSON, where it came from, and its image bytes."""

    def __init__(self, spec: DatasetSpec, cache_dir: str | None = None) -> None:
        from litdata import StreamingDataset

        assert spec.optimized is not None
        self.spec = spec
        self._dataset = StreamingDataset(spec.optimized, cache_dir=cache_dir)

    def __len__(self) -> int:
        return len(self._dataset)

    def load(self, index: int) -> tuple[Record, list[ImageSource]]:
        item = self._dataset[index]
        where = item["where"]
        record = to_record(parse_line(item["record"], where), where)
        return record, unpack_blobs(item["images"])


def pack_blobs(blobs: list[bytes]) -> bytes:
    """Several byte strings as one: LitData needs every item to have the same structure, and records
    hold any number of images. Layout: count, lengths (uint64 little-endian), then the bytes."""
    header = struct.pack(f"<Q{len(blobs)}Q", len(blobs), *(len(blob) for blob in blobs))
    return header + b"".join(blobs)


def unpack_blobs(packed: bytes) -> list[bytes]:
    (count,) = struct.unpack_from("<Q", packed)
    lengths = struct.unpack_from(f"<{count}Q", packed, 8)
    blobs, offset = [], 8 * (count + 1)
    for length in lengths:
        blobs.append(bytes(packed[offset : offset + length]))
        offset += length
    return blobs


def open_source(spec: DatasetSpec, cache_dir: str | None = None) -> RecordSource:
    if spec.optimized:
        return OptimizedSource(spec, cache_dir)
    if spec.hf_dataset:
        return HFDatasetSource(spec, cache_dir)
    if spec.webdataset:
        return WebDatasetSource(spec)
    return AnnotationSource(spec)


def open_sources(path: str, cache_dir: str | None = None) -> list[RecordSource]:
    """The datasets at `path`: a benchmark file as distributed (`h2ovl.data.benchmarks`), else a mixture."""
    benchmark = open_benchmark(path)
    return [benchmark] if benchmark is not None else [open_source(spec, cache_dir) for spec in load_mixture(path)]
