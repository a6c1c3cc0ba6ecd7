"""The parquet files a path names, as the Hugging Face Hub lays them out (`<split>-00000-of-00003.parquet`):
a file, a folder (searched below) or a glob, of one split; a folder holding several splits side by side
(a validation and a test split) is refused, naming them, rather than read as one dataset."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from h2ovl.data.meta import MetaError

_SHARD = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}(-[^.]*)?\.parquet$")


def parquet_files(path: str) -> list[Path]:
    """The shards a file, folder (searched below) or glob names, of one split."""
    if any(ch in path for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(path, recursive=True))
    elif Path(path).is_dir():
        files = sorted(Path(path).rglob("*.parquet"))
    else:
        files = [Path(path)]
    if not files:
        raise MetaError(f"{path}: no parquet files there")
    splits = {m.group("split") if (m := _SHARD.match(f.name)) else f.name for f in files}
    if len(splits) > 1 and all(_SHARD.match(f.name) for f in files):
        raise MetaError(
            f"{path} holds the splits {sorted(splits)}: name one, e.g. {Path(path) / (sorted(splits)[0] + '-*.parquet')}"
        )
    return files
