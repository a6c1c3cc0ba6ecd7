"""The benchmarks' own release files, read with their image folders as they unpack.

- OCRBench: `OCRBench.json`, a list of `{dataset_name, id, image_path, question, answers, type}`
  (`answers` a string or a list), images under `OCRBench_Images/` (beside the file or its folder).
- TextVQA: `TextVQA_0.5.1_val.json`, `{dataset_type, dataset_name: "textvqa", dataset_version, data: [...]}`
  with `question_id`, `image_id`, `question`, ten `answers`; images `train_images/<image_id>.jpg`.
- DocVQA: `val_v1.0.json` (or `_withQT`), `{dataset_name: "docvqa", dataset_split, data: [...]}` with
  `questionId`, `question`, `image` (`documents/<name>.png`, relative to the file), `answers`.
- InfographicVQA: `infographicsVQA_val_v1.0.json` (or `_withQT`), `{dataset_name: "infographicVQA", ...}`
  with `questionId`, `question`, `image_local_name`, `answers`; images in the release's image folder.
- ChartQA: `test_human.json` / `test_augmented.json`, lists of `{imgname, query, label}`, images in `png/`;
  the `test` folder itself reads both splits.
These files hold no pixels (a few MB at most) and are read whole; images are read per question.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from h2ovl.data.benchmarks.rows import BenchmarkRow, answer_list, text_field
from h2ovl.data.meta import MetaError
from h2ovl.data.records import BadSample
from h2ovl.errors import read_text_file

OCRBENCH_KEYS = frozenset({"dataset_name", "id", "image_path", "question", "answers", "type"})
CHARTQA_KEYS = frozenset({"imgname", "query", "label"})
CHARTQA_SPLITS = {"test_human.json": "human", "test_augmented.json": "augmented"}


@dataclass(frozen=True)
class _Layout:
    benchmark: str
    image_dirs: Callable[[Path], list[Path]]
    """Where the images may lie, given the annotation file's folder, most likely first."""
    image_of: Callable[[dict[str, Any], str], str]
    row: Callable[[dict[str, Any], int, str], tuple[str, str, tuple[str, ...], str | None]]
    """(id, question, answers, category) of an item."""


def _ocrbench_row(item: dict[str, Any], index: int, where: str) -> tuple[str, str, tuple[str, ...], str | None]:
    # The benchmark's `id` restarts in each source dataset; its own scorer keys questions by position.
    return (
        str(index),
        text_field(item, "question", where),
        answer_list(item.get("answers"), "answers", where),
        text_field(item, "type", where),
    )


def _vqa_row(id_key: str) -> Callable[[dict[str, Any], int, str], tuple[str, str, tuple[str, ...], str | None]]:
    def row(item: dict[str, Any], index: int, where: str) -> tuple[str, str, tuple[str, ...], str | None]:
        if item.get(id_key) is None:
            raise BadSample("malformed_json", where, f"no {id_key!r}")
        return (
            str(item[id_key]),
            text_field(item, "question", where),
            answer_list(item.get("answers"), "answers", where),
            None,
        )

    return row


def _chartqa_row(split: str) -> Callable[[dict[str, Any], int, str], tuple[str, str, tuple[str, ...], str | None]]:
    def row(item: dict[str, Any], index: int, where: str) -> tuple[str, str, tuple[str, ...], str | None]:
        return (
            f"{split}/{index}",
            text_field(item, "query", where),
            answer_list(item.get("label"), "label", where),
            split,
        )

    return row


LAYOUTS = {
    "ocrbench": _Layout(
        "ocrbench",
        lambda d: [d / "OCRBench_Images", d.parent / "OCRBench_Images", d],
        lambda item, where: text_field(item, "image_path", where),
        _ocrbench_row,
    ),
    "textvqa": _Layout(
        "textvqa",
        lambda d: [d / "train_images", d / "train_val_images" / "train_images", d],
        lambda item, where: text_field(item, "image_id", where) + ".jpg",
        _vqa_row("question_id"),
    ),
    "docvqa": _Layout(
        "docvqa", lambda d: [d, d / "val"], lambda item, where: text_field(item, "image", where), _vqa_row("questionId")
    ),
    "infovqa": _Layout(
        "infovqa",
        lambda d: [d / "infographicsvqa_images", d / "infographicVQA_val_v1.0_images", d / "images", d],
        lambda item, where: text_field(item, "image_local_name", where),
        _vqa_row("questionId"),
    ),
}
#: `dataset_name` of the official VQA files -> benchmark
DATASET_NAMES = {"textvqa": "textvqa", "docvqa": "docvqa", "infographicvqa": "infovqa"}


def _chartqa_layout(split: str) -> _Layout:
    return _Layout(
        "chartqa", lambda d: [d / "png", d], lambda item, where: text_field(item, "imgname", where), _chartqa_row(split)
    )


def recognise(value: Any, path: Path) -> tuple[str, list[dict[str, Any]]] | None:
    """(benchmark, items) when `value` (a parsed JSON file) is one of the official layouts, else None.
    A file that looks like a benchmark release but is none of ours is refused by name."""
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        keys = set(value[0])
        if OCRBENCH_KEYS <= keys:
            return "ocrbench", value
        if CHARTQA_KEYS <= keys:
            if path.name not in CHARTQA_SPLITS:
                raise MetaError(
                    f"{path}: ChartQA items, but the split is told by the file name: name it as released "
                    f"({' or '.join(CHARTQA_SPLITS)})"
                )
            return "chartqa", value
        return None
    if isinstance(value, dict) and "dataset_name" in value and isinstance(value.get("data"), list):
        name = str(value["dataset_name"]).lower()
        if name not in DATASET_NAMES:
            raise MetaError(
                f"{path}: a benchmark file of dataset {value['dataset_name']!r}, which h2ovl does not read "
                f"(it reads {sorted(DATASET_NAMES.values())} and OCRBench, ChartQA)"
            )
        return DATASET_NAMES[name], value["data"]
    return None


class OfficialRows:
    """The questions of one or more official annotation files (ChartQA's two splits), in file order."""

    own_ids = True

    def __init__(
        self, path: Path, parts: list[tuple[Path, _Layout, list[dict[str, Any]]]], images: Path | None = None
    ) -> None:
        self.path = path
        self.benchmark = parts[0][1].benchmark
        self._parts = [
            (file, layout, items, self._image_dir(file, layout, items, images)) for file, layout, items in parts
        ]
        self._starts = []
        total = 0
        for _, _, items, _ in self._parts:
            self._starts.append(total)
            total += len(items)
        self._total = total

    @staticmethod
    def _image_dir(file: Path, layout: _Layout, items: list[dict[str, Any]], images: Path | None) -> Path:
        """The first candidate folder holding the first question's image; none is an error now, not a
        thousand skipped questions later."""
        candidates = [images] if images is not None else layout.image_dirs(file.parent)
        first = layout.image_of(items[0], f"{file}[0]") if isinstance(items[0], dict) else None
        for folder in candidates:
            if first is not None and (folder / first).is_file():
                return folder
        looked = ", ".join(str(c) for c in candidates)
        raise MetaError(
            f"{file}: the image of its first question ({first!r}) is in none of: {looked}; "
            "pass --images DIR (the folder the release's image paths are relative to)"
        )

    def __len__(self) -> int:
        return self._total

    def row(self, index: int) -> BenchmarkRow:
        part = max(i for i, start in enumerate(self._starts) if start <= index)
        file, layout, items, folder = self._parts[part]
        local = index - self._starts[part]
        where = f"{file}[{local}]"
        item = items[local]
        if not isinstance(item, dict):
            raise BadSample("malformed_json", where, f"expected an object, got {type(item).__name__}")
        id_, question, answers, category = layout.row(item, local, where)
        return BenchmarkRow(
            id=id_,
            question=question,
            answers=answers,
            image=folder / layout.image_of(item, where),
            where=where,
            category=category,
        )


def _load(file: Path) -> Any:
    try:
        return json.loads(read_text_file(file, MetaError, "the benchmark file"))
    except json.JSONDecodeError as error:
        raise MetaError(f"{file}: not valid JSON: {error}") from None


#: the official files are at most a few MB (TextVQA's val annotations, the largest, ~10 MB); a JSON file
#: larger than this is training data (a LLaVA list), never parsed here just to be told apart
MAX_RELEASE_BYTES = 64 << 20


def _load_if_json(file: Path) -> Any:
    """The parsed file, or None when it does not parse or is too large to be a release: then it is no
    benchmark release, and the reader of meta files and records reports what is wrong with it in its own words."""
    try:
        if file.stat().st_size > MAX_RELEASE_BYTES:
            return None
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def open_official(path: Path, images: Path | None = None) -> OfficialRows | None:
    """The official layout at `path` (a JSON file, or ChartQA's `test` folder), or None if it is not one."""
    if path.is_dir():
        files = [path / name for name in CHARTQA_SPLITS if (path / name).is_file()]
        if not files:
            return None
        parts = []
        for file in files:
            found = recognise(_load(file), file)
            if found is None or found[0] != "chartqa":
                raise MetaError(f"{file}: not ChartQA's items ({sorted(CHARTQA_KEYS)})")
            parts.append((file, _chartqa_layout(CHARTQA_SPLITS[file.name]), found[1]))
        return OfficialRows(path, parts, images)
    found = recognise(_load_if_json(path), path)
    if found is None:
        return None
    name, items = found
    if not items:
        raise MetaError(f"{path}: the {name} file holds no questions")
    layout = _chartqa_layout(CHARTQA_SPLITS[path.name]) if name == "chartqa" else LAYOUTS[name]
    return OfficialRows(path, [(path, layout, items)], images)
