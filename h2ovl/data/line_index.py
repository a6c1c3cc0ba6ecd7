"""The index of a JSON Lines annotation file: each record's byte offset and line number, 16 bytes a record,
built once and cached beside the file, then memory-mapped by every process that reads it.

Millions of records cost no start-up and no memory per loader worker: the cache is a `.npy` file keyed by
the annotation's size and modification time (`.<name>.index-<size>-<mtime>.npy`), written aside and renamed
into place, so a reader finds it whole or builds it anew; workers map it (the pages are shared), never copy
it. A LLaVA `.json` list is converted once to a JSON Lines file the same way, so it is parsed whole once,
not in every process. Where the data's folder is read-only, caches go under `$H2OVL_CACHE` (default
`~/.cache/h2ovl`). Built with numpy over 64 MiB chunks: a 10M-line file indexes in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from h2ovl.errors import read_text_file
from h2ovl.partial_writes import PARTIAL_PREFIX, partial_path, remove_stale_partials

_CHUNK = 64 << 20


def _cache_folder(annotation: Path) -> Path:
    folder = annotation.parent
    if os.access(folder, os.W_OK):
        return folder
    digest = hashlib.sha1(str(annotation.resolve()).encode()).hexdigest()[:16]
    fallback = Path(os.environ.get("H2OVL_CACHE", Path.home() / ".cache" / "h2ovl")) / "index" / digest
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def cache_path(annotation: Path, kind: str, suffix: str) -> tuple[Path, str]:
    """(`.<name>.<kind>-<size>-<mtime_ns><suffix>` in the annotation's folder or the fallback cache, the
    prefix every cache of this kind for this file shares)."""
    stat = annotation.stat()
    prefix = f".{annotation.name}.{kind}-"
    return _cache_folder(annotation) / f"{prefix}{stat.st_size}-{stat.st_mtime_ns}{suffix}", prefix


def _write_aside(target: Path, prefix: str, write) -> None:
    """`write(path)` under a partial name, then renamed into place; the file's older caches (named
    `prefix*`, for other sizes or times) and partials left by killed writers are removed."""
    folder = target.parent
    remove_stale_partials(folder, f"{prefix}*")
    temporary = partial_path(target)
    write(temporary)
    os.replace(temporary, target)
    for old in folder.glob(f"{prefix}*"):
        if old != target and PARTIAL_PREFIX not in old.name:
            old.unlink(missing_ok=True)


def _scan_chunks(path: Path):
    """Per 64 MiB of text: (byte offsets, 1-based line numbers) of the lines holding more than whitespace."""
    position, line = 0, 0
    with path.open("rb") as file:
        carry = b""
        while True:
            chunk = file.read(_CHUNK)
            if not chunk and not carry:
                return
            data = carry + chunk
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
            if not chunk:  # the last line, without a newline
                ends = np.append(ends, len(data))
            starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.empty(0, dtype=np.int64)
            lengths = ends - starts
            keep = lengths > 0
            for i in np.flatnonzero(keep & (lengths <= 8)):  # short lines: whitespace only is no record
                keep[i] = bool(data[starts[i] : ends[i]].strip())
            yield (position + starts[keep]).astype(np.int64), (line + 1 + np.flatnonzero(keep)).astype(np.int64)
            consumed = int(ends[-1]) + 1 if len(ends) else 0
            line += len(ends)
            position += consumed
            carry = data[consumed:] if chunk else b""


def scan_lines(path: Path) -> np.ndarray:
    """[n, 2] int64: the byte offset and 1-based line number of every line holding more than whitespace."""
    chunks = list(_scan_chunks(path))
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    return np.stack([np.concatenate([o for o, _ in chunks]), np.concatenate([n for _, n in chunks])], axis=1)


def _write_index(path: Path, temporary: Path) -> None:
    """The index written straight into a memory-mapped `.npy` (file pages, not the process's memory)."""
    chunks = list(_scan_chunks(path))
    total = sum(len(o) for o, _ in chunks)
    index = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.int64, shape=(total, 2))
    row = 0
    while chunks:
        offsets, numbers = chunks.pop(0)
        index[row : row + len(offsets), 0] = offsets
        index[row : row + len(offsets), 1] = numbers
        row += len(offsets)
    index.flush()
    del index


def line_index(path: Path) -> np.ndarray:
    """The memory-mapped index of `path`, built and cached on first use."""
    cached, prefix = cache_path(path, "index", ".npy")
    if not cached.is_file():
        _write_aside(cached, prefix, lambda temporary: _write_index(path, temporary))
    return np.load(cached, mmap_mode="r")


def llava_as_jsonl(path: Path, error: type[Exception]) -> Path:
    """A LLaVA `.json` list as a JSON Lines file (one item a line, in order), converted once and cached."""
    converted, prefix = cache_path(path, "lines", ".lines")
    if converted.is_file():
        return converted
    try:
        items = json.loads(read_text_file(path, error, "the annotation file"))
    except json.JSONDecodeError as decode_error:
        raise error(f"{path}: the annotation file is not valid JSON: {decode_error}") from None
    if not isinstance(items, list):
        raise error(f"{path}: a .json annotation file must hold a list of records")

    def write(temporary: Path) -> None:
        with open(temporary, "w", encoding="utf-8") as out:
            for item in items:  # one line each, blank-free, so line k is item k - 1
                out.write(json.dumps(item, ensure_ascii=False) + "\n")

    _write_aside(converted, prefix, write)
    return converted
