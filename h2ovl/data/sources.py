"""Random access to the records of one dataset: local annotation files or LitData-optimized chunks here;
Hugging Face datasets (`hf_source`) and WebDataset shards (`webdataset_source`) in modules of their own.

A jsonl file is indexed once by byte offset (nothing is parsed until a record is needed), so start-up
stays cheap on millions of lines and a malformed line only costs its own sample.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Protocol

from h2ovl.data.benchmarks import open_benchmark
from h2ovl.data.hf_source import HFDatasetSource
from h2ovl.data.meta import DatasetSpec, MetaError, load_mixture
from h2ovl.data.records import BadSample, Record, parse_line, to_record
from h2ovl.data.webdataset_source import WebDatasetSource
from h2ovl.errors import read_text_file
from h2ovl.preprocessing.image_io import ImageSource


class RecordSource(Protocol):
    spec: DatasetSpec

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[Record, list[ImageSource]]:
        """The validated record and its image sources (paths or bytes); raises `BadSample`."""


class AnnotationSource:
    """Records of a `.jsonl` file (one per non-blank line) or a LLaVA `.json` list, images under `root`."""

    def __init__(self, spec: DatasetSpec) -> None:
        assert spec.annotation is not None and spec.root is not None
        self.spec = spec
        self.path = Path(spec.annotation)
        self.root = Path(spec.root)
        if self.path.suffix == ".jsonl":
            self._offsets, self._lines = self._index_lines(self.path)
            self._items = None
        else:
            text = read_text_file(self.path, MetaError, "the annotation file")
            try:
                items = json.loads(text)
            except json.JSONDecodeError as error:
                raise MetaError(f"{self.path}: the annotation file is not valid JSON: {error}") from None
            if not isinstance(items, list):
                raise MetaError(f"{self.path}: a .json annotation file must hold a list of records")
            self._items = items
        if len(self) == 0:
            raise MetaError(f"{self.path}: dataset {spec.name!r} holds no records (an empty or blank annotation file)")

    @staticmethod
    def _index_lines(path: Path) -> tuple[list[int], list[int]]:
        offsets, line_numbers, offset = [], [], 0
        with path.open("rb") as file:
            for number, line in enumerate(file, start=1):
                if line.strip():
                    offsets.append(offset)
                    line_numbers.append(number)
                offset += len(line)
        return offsets, line_numbers

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else len(self._offsets)

    def where(self, index: int) -> str:
        if self._items is not None:
            return f"{self.path}[{index}]"
        return f"{self.path}:{self._lines[index]}"

    def raw_text(self, index: int) -> str:
        """The record as JSON text, as stored."""
        if self._items is not None:
            return json.dumps(self._items[index], ensure_ascii=False)
        with self.path.open("rb") as file:
            file.seek(self._offsets[index])
            return file.readline().decode("utf-8", errors="replace")

    def load(self, index: int) -> tuple[Record, list[ImageSource]]:
        where = self.where(index)
        if self._items is not None:
            raw = self._items[index]
            if not isinstance(raw, dict):
                raise BadSample("malformed_json", where, f"expected an object, got {type(raw).__name__}")
        else:
            with self.path.open("rb") as file:
                file.seek(self._offsets[index])
                raw = parse_line(file.readline(), where)
        record = to_record(raw, where)
        return record, [self._image_path(image, where) for image in record.images]

    def _image_path(self, image: str, where: str) -> Path:
        """`root / image` (an absolute path stays itself, as InternVL's joining leaves it); with
        `allow_outside_root: false`, a path that is absolute or climbs out of the root (judged on the text,
        so a root whose folders are symlinks still works) is refused."""
        if not self.spec.allow_outside_root:
            normal = os.path.normpath(image)
            if os.path.isabs(image) or normal == ".." or normal.startswith(".." + os.sep):
                raise BadSample("image_outside_root", where, f"{image!r} is outside {self.root}, and the dataset sets "
                                "allow_outside_root: false")
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
