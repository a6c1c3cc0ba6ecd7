"""Dataset mixtures: InternVL's meta file, or one LLaVA-style annotation file.

A meta file is a JSON (or YAML) object of named datasets::

    {"ocr": {"root": "images/", "annotation": "ocr.jsonl", "repeat_time": 2.0, "max_dynamic_patch": 6}}

Relative `root`, `annotation` and `optimized` paths are found as InternVL finds them: against the working
directory, so a stock InternVL meta file (`"root": "playground/data/"`) works unchanged from the folder its
training runs in; `"relative_to": "meta"` on a dataset finds them against the meta file's folder instead
(relocatable files: h2ovl's own synthetic data writes it). `repeat_time` is the mixture weight
(2.0 repeats every record twice per epoch, 0.3 draws 30% of them afresh each epoch). A dataset
prepared by `h2ovl data optimize` names its LitData folder or URL with `optimized` instead of
`root`/`annotation`. Everything wrong with a meta file fails here, at start-up, naming the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from h2ovl.errors import UserError, read_text_file


class MetaError(UserError, ValueError):
    """A meta file (or data path) that cannot describe a mixture."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    annotation: str | None
    """A .jsonl file (one record per line) or a .json list of records; None for optimized data."""
    root: str | None
    """The folder image paths are relative to."""
    repeat_time: float = 1.0
    max_dynamic_patch: int | None = None
    """Lowers (or raises) the preprocessor's tile budget for this dataset's images."""
    data_augment: bool = False
    """JPEG re-compression of tiles at a random quality, as InternVL's training augmentation."""
    optimized: str | None = None
    """A LitData folder or URL written by `h2ovl data optimize`."""
    hf_dataset: str | None = None
    """A Hugging Face dataset: a save_to_disk folder, parquet files (file, folder or glob) or a hub id."""
    webdataset: str | None = None
    """WebDataset tar shards (`train-{000000..000099}.tar` or a glob)."""
    split: str | None = None
    """The split of a Hugging Face dataset that holds several."""
    config: str | None = None
    """The configuration of a hub dataset that has several."""
    columns: dict[str, str] | None = None
    """Our column names -> the dataset's (`{"conversations": "dialog"}`), for HF datasets and WebDataset JSON."""
    allow_outside_root: bool = True
    """Follow image paths that are absolute or climb out of `root` with ".." (InternVL's joining does, and
    annotations on clusters hold absolute paths). Off: such a record is a counted `image_outside_root`
    skip, so a shared dataset's records reach only the files under its root."""


_KEYS = {
    "root",
    "annotation",
    "repeat_time",
    "max_dynamic_patch",
    "min_dynamic_patch",
    "data_augment",
    "length",
    "optimized",
    "allow_outside_root",
    "relative_to",
    "hf_dataset",
    "webdataset",
    "split",
    "config",
    "columns",
}
#: the keys that say where a dataset's records are; exactly one per dataset
_WHERE = ("annotation", "optimized", "hf_dataset", "webdataset")
#: where a relative path of a meta file is found: InternVL's working directory, or the meta file's folder
RELATIVE_TO = ("cwd", "meta")


def _read_structured(path: Path) -> Any:
    text = read_text_file(path, MetaError, "the meta file")
    try:
        if path.suffix in (".yaml", ".yml"):
            from omegaconf import OmegaConf

            return OmegaConf.to_container(OmegaConf.create(text), resolve=True)
        return json.loads(text)
    except Exception as error:  # noqa: BLE001 - any parse failure becomes a named error
        raise MetaError(f"{path}: cannot parse: {error}") from None


def _resolve(base: Path, value: str) -> str:
    if "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _spec(name: str, entry: Any, base: Path, where: str) -> DatasetSpec:
    """One dataset of a meta file; `base` is the meta file's folder."""
    if not isinstance(entry, dict):
        raise MetaError(f"{where}: dataset {name!r} must be an object, got {type(entry).__name__}")
    unknown = set(entry) - _KEYS
    if unknown:
        raise MetaError(f"{where}: dataset {name!r} has unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    repeat_time = entry.get("repeat_time", 1.0)
    if isinstance(repeat_time, bool) or not isinstance(repeat_time, (int, float)) or repeat_time <= 0:
        raise MetaError(f"{where}: dataset {name!r}: repeat_time must be a positive number, got {repeat_time!r}")
    max_patch = entry.get("max_dynamic_patch")
    if max_patch is not None and (isinstance(max_patch, bool) or not isinstance(max_patch, int) or max_patch < 1):
        raise MetaError(f"{where}: dataset {name!r}: max_dynamic_patch must be a positive integer, got {max_patch!r}")
    min_patch = entry.get("min_dynamic_patch", 1)
    if min_patch != 1:  # InternVL meta files carry 1 (no effect); another value would be silently ignored
        raise MetaError(
            f"{where}: dataset {name!r}: min_dynamic_patch={min_patch!r} is not applied per dataset (only 1, "
            "which changes nothing, is accepted); set model.preprocessor.init_args.min_tiles for the run instead"
        )
    outside = entry.get("allow_outside_root", True)
    if not isinstance(outside, bool):
        raise MetaError(f"{where}: dataset {name!r}: allow_outside_root must be true or false, got {outside!r}")
    relative_to = entry.get("relative_to", "cwd")
    if relative_to not in RELATIVE_TO:
        raise MetaError(
            f"{where}: dataset {name!r}: relative_to must be one of {list(RELATIVE_TO)}, got {relative_to!r}"
        )
    common = dict(
        name=name,
        repeat_time=float(repeat_time),
        max_dynamic_patch=max_patch,
        data_augment=bool(entry.get("data_augment", False)),
        allow_outside_root=outside,
    )
    found_from = Path.cwd() if relative_to == "cwd" else base
    given = [key for key in _WHERE if key in entry]
    if len(given) > 1:
        raise MetaError(f"{where}: dataset {name!r} names its records twice ({', '.join(given)}): keep one")
    if "optimized" in entry:
        return DatasetSpec(
            annotation=None, root=None, optimized=_resolve(found_from, str(entry["optimized"])), **common
        )
    if "hf_dataset" in entry or "webdataset" in entry:
        return _streamed_spec(name, entry, found_from, where, common)
    for key in ("root", "annotation"):
        if not isinstance(entry.get(key), str):
            raise MetaError(f"{where}: dataset {name!r} is missing {key!r} (a path)")
    annotation = Path(_resolve(found_from, entry["annotation"]))
    root = Path(_resolve(found_from, entry["root"]))
    for key, path, exists in (("annotation", annotation, annotation.is_file()), ("root", root, root.is_dir())):
        if exists:
            continue
        what = f"annotation file {path} does not exist" if key == "annotation" else f"image root {path} is not a folder"
        hint = ""
        if relative_to == "cwd" and not Path(entry[key]).expanduser().is_absolute():
            beside = Path(_resolve(base, entry[key]))
            hint = (
                f" (relative paths are found from the working directory, {Path.cwd()}, as InternVL finds them; "
                + (
                    f"it is at {beside}, beside the meta file: "
                    if beside.exists()
                    else "for paths beside the meta file "
                )
                + 'set "relative_to": "meta" on the dataset)'
            )
        raise MetaError(f"{where}: dataset {name!r}: {what}{hint}")
    return DatasetSpec(annotation=str(annotation), root=str(root), **common)


def _streamed_spec(
    name: str, entry: dict[str, Any], found_from: Path, where: str, common: dict[str, Any]
) -> DatasetSpec:
    """A Hugging Face dataset or WebDataset entry: its location (a local path found like the others, or a
    hub id), the split/config/columns it may need, and `root` for image paths its rows hold."""
    key = "hf_dataset" if "hf_dataset" in entry else "webdataset"
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise MetaError(f"{where}: dataset {name!r}: {key} must be a path, glob or hub id, got {value!r}")
    local = Path(_resolve(found_from, value))
    # A hub id ("org/name") stays as written when no such local path exists; shard patterns are resolved.
    location = str(local) if (local.exists() or key == "webdataset" or any(ch in value for ch in "*?[{")) else value
    columns = entry.get("columns")
    if columns is not None and not (
        isinstance(columns, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items())
    ):
        raise MetaError(f"{where}: dataset {name!r}: columns must map our names to the dataset's, got {columns!r}")
    for field_name in ("split", "config"):
        if entry.get(field_name) is not None and not isinstance(entry[field_name], str):
            raise MetaError(f"{where}: dataset {name!r}: {field_name} must be text, got {entry[field_name]!r}")
    root = _resolve(found_from, entry["root"]) if isinstance(entry.get("root"), str) else None
    return DatasetSpec(
        annotation=None,
        root=root,
        columns=columns,
        split=entry.get("split"),
        config=entry.get("config"),
        **{key: location},
        **common,
    )


def _first_character(path: Path) -> bytes:
    with path.open("rb") as file:
        head = file.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")  # a UTF-8 BOM, whitespace
    return head[:1]


def load_mixture(path: str | Path) -> list[DatasetSpec]:
    """The datasets of a meta file; a bare .jsonl or LLaVA .json list is a one-dataset mixture
    whose images are relative to the file's folder."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MetaError(f"data file {path} does not exist")
    if path.suffix == ".jsonl" or (path.suffix == ".json" and _first_character(path) == b"["):
        # A LLaVA list (told by its first character: a list of millions of records is not parsed here)
        return [DatasetSpec(name=path.stem, annotation=str(path), root=str(path.parent))]
    meta = _read_structured(path)
    if isinstance(meta, list):  # LLaVA: the annotation file itself
        return [DatasetSpec(name=path.stem, annotation=str(path), root=str(path.parent))]
    if not isinstance(meta, dict) or not meta:
        raise MetaError(f"{path}: a meta file is a non-empty object of datasets, got {type(meta).__name__}")
    return [_spec(str(name), entry, path.parent, str(path)) for name, entry in meta.items()]
