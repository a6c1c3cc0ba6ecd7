"""WebDataset tar shards as training data, with random access: each shard's member headers are scanned
once (no member is extracted) into arrays of (sample, suffix, offset, size), so a shuffled epoch reads one
sample's bytes by seeking, and a resumed run rebuilds exactly the samples of the interrupted one.

Shards are named as WebDataset names them (`shards/train-{000000..000099}.tar`, brace-expanded, or a glob).
Members are grouped into samples as WebDataset groups them: the key is a member's path up to the first dot
of its file name, the suffix the rest (lower-cased), consecutive members with one key form a sample, and
`__...__` members are skipped. A sample's `json` member holds the conversation (`h2ovl.data.schemas`); its
images are the members whose suffix is an image extension (`jpg`, `png`, ...), in order: the bare one, then
`0.jpg`, `1.jpg`, ... for several.
"""

from __future__ import annotations

import glob
import json
import re
import tarfile
from pathlib import Path

import numpy as np

from h2ovl.data.meta import DatasetSpec, MetaError
from h2ovl.data.records import BadSample, Record, to_record
from h2ovl.data.schemas import row_to_record
from h2ovl.preprocessing.image_io import ImageSource

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "ppm", "pgm", "pbm", "pnm")
_KEY_SUFFIX = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # WebDataset's base_plus_ext


def shard_paths(pattern: str) -> list[Path]:
    from braceexpand import braceexpand

    paths: list[Path] = []
    for expanded in braceexpand(pattern):
        matches = sorted(glob.glob(expanded)) if any(ch in expanded for ch in "*?[") else [expanded]
        paths += [Path(m) for m in matches]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        raise MetaError(f"webdataset {pattern!r}: no such shard(s): {missing[:3] or pattern}")
    return paths


def _image_order(suffix: str) -> tuple[int, int] | None:
    """Where an image member goes among a sample's images (None: not an image)."""
    parts = suffix.split(".")
    if parts[-1] not in IMAGE_SUFFIXES or len(parts) > 2:
        return None
    if len(parts) == 1:
        return (0, 0)
    return (1, int(parts[0])) if parts[0].isdigit() else None


class WebDatasetSource:
    """One WebDataset of a mixture (`webdataset` in the meta file)."""

    def __init__(self, spec: DatasetSpec) -> None:
        assert spec.webdataset is not None
        self.spec = spec
        self.shards = shard_paths(spec.webdataset)
        starts, shard_of, keys, suffixes, offsets, sizes = [], [], [], [], [], []
        for shard_index, shard in enumerate(self.shards):
            try:
                with tarfile.open(shard, mode="r:") as tar:
                    previous = None
                    for member in tar:
                        if not member.isfile():
                            continue
                        name = member.name
                        if "/" not in name and name.startswith("__") and name.endswith("__"):
                            continue
                        match = _KEY_SUFFIX.match(name)
                        if match is None:
                            continue
                        key, suffix = match.group(1), match.group(2).lower()
                        if key != previous:
                            starts.append(len(offsets))
                            shard_of.append(shard_index)
                            keys.append(key)
                            previous = key
                        suffixes.append(suffix)
                        offsets.append(member.offset_data)
                        sizes.append(member.size)
            except (tarfile.TarError, OSError) as error:
                raise MetaError(f"{shard}: not a readable tar shard ({error})") from None
        if not starts:
            raise MetaError(f"webdataset {spec.webdataset!r} (dataset {spec.name!r}) holds no samples")
        self._starts = np.array(starts + [len(offsets)], dtype=np.int64)
        self._shard = np.array(shard_of, dtype=np.int32)
        self._keys = keys
        self._suffix_names = sorted(set(suffixes))
        codes = {name: i for i, name in enumerate(self._suffix_names)}
        self._suffixes = np.array([codes[s] for s in suffixes], dtype=np.int32)
        self._offsets = np.array(offsets, dtype=np.int64)
        self._sizes = np.array(sizes, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._shard)

    def load(self, index: int) -> tuple[Record, list[ImageSource]]:
        shard = self.shards[int(self._shard[index])]
        where = f"{shard}:{self._keys[index]}"
        members: dict[str, bytes] = {}
        with shard.open("rb") as file:
            for m in range(int(self._starts[index]), int(self._starts[index + 1])):
                suffix = self._suffix_names[int(self._suffixes[m])]
                if suffix in members:
                    raise BadSample("malformed_json", where, f"two members with the suffix {suffix!r}")
                file.seek(int(self._offsets[m]))
                members[suffix] = file.read(int(self._sizes[m]))
        if "json" not in members:
            raise BadSample("no_conversations", where, f"no .json member (the sample has {sorted(members)})")
        try:
            row = json.loads(members["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadSample("malformed_json", where, f"the .json member: {error}") from None
        if not isinstance(row, dict):
            raise BadSample("malformed_json", where, f"the .json member holds a {type(row).__name__}, not an object")
        ordered = sorted((order, suffix) for suffix in members if (order := _image_order(suffix)) is not None)
        images: list[ImageSource] = [members[suffix] for _, suffix in ordered]
        raw, images = row_to_record(
            {**row, "id": row.get("id", self._keys[index])}, where, shard.parent, self.spec.columns, images
        )
        return to_record(raw, where), images
