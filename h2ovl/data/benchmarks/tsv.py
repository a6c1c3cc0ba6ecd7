"""VLMEvalKit's benchmark TSV files (`OCRBench.tsv`, `TextVQA_VAL.tsv`, `DocVQA_VAL.tsv`, `InfoVQA_VAL.tsv`,
`ChartQA_TEST.tsv`), streamed: only row offsets are kept, each row is read and parsed when asked for.

The layout is VLMEvalKit's (`ImageBaseDataset`, written by pandas): a header of `index, image, question,
answer` plus `category` (OCRBench's question type) or `split`; fields that hold a tab, a newline or a quote
are quoted with doubled quotes inside. `image` is base64, or, to save space, the `index` of an earlier row
holding the same image (any value of at most 64 characters). `answer` is the text, or a list of answers
written as a Python list literal (`"['a', 'b']"`), which VLMEvalKit `eval`s and we read with
`ast.literal_eval` (data, never code).
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import io
import sys
from array import array
from pathlib import Path

import numpy as np

from h2ovl.data.benchmarks.rows import BenchmarkRow, answer_list, text_field
from h2ovl.data.meta import MetaError
from h2ovl.data.records import BadSample

REQUIRED = ("index", "question", "answer")
#: VLMEvalKit reads an `image` value this short as another row's index
MAX_REFERENCE = 64


class _Index:
    """Row offsets and `index` values gathered while scanning: 8 bytes each in arrays, so the scan's memory
    is flat in the row count (integer indices, as VLMEvalKit writes them; other values fall back to text)."""

    def __init__(self) -> None:
        self.offsets = array("q")
        self.keys: array | list[str] = array("q")

    def add(self, offset: int, first_line: bytes) -> None:
        self.offsets.append(offset)
        key = first_line.split(b"\t", 1)[0].strip(b'"').decode("utf-8", "replace")
        if isinstance(self.keys, array):
            if key.isdigit():
                self.keys.append(int(key))
                return
            self.keys = [str(k) for k in self.keys]
        self.keys.append(key)


def _row_offsets(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(the header, each row's byte offset plus the end of the file, each row's `index` field).

    A row ends at a newline outside quotes: with doubled quotes inside quoted fields, that is a newline
    after an even number of quote characters in the row."""
    index = _Index()
    with path.open("rb") as file:
        header_line = file.readline()
        position = len(header_line)
        row_start, quotes, first_line = position, 0, None
        for line in file:
            if first_line is None:  # a row starts here
                row_start, first_line = position, line
            position += len(line)
            quotes += line.count(b'"')
            if quotes % 2 == 0:  # the row ends with this line
                if first_line.strip(b"\r\n") or position - row_start > len(line):  # blank lines are no rows
                    index.add(row_start, first_line)
                first_line, quotes = None, 0
        if first_line is not None:  # an unterminated quote runs to the end: a row that will not parse
            index.add(row_start, first_line)
        index.offsets.append(position)
    try:
        header = next(csv.reader([header_line.decode("utf-8")], delimiter="\t"))
    except (UnicodeDecodeError, StopIteration):
        raise MetaError(f"{path}: the first line is not a UTF-8 header of tab-separated column names") from None
    keys = (
        np.frombuffer(index.keys, dtype=np.int64)
        if isinstance(index.keys, array)
        else np.array(index.keys, dtype=object)
    )
    return header, np.frombuffer(index.offsets, dtype=np.int64), keys


class VLMEvalKitRows:
    own_ids = False  # VLMEvalKit's `index` replaces the benchmark's question ids

    def __init__(self, path: Path, benchmark: str) -> None:
        self.path = path
        self.benchmark = benchmark
        header, self._offsets, keys = _row_offsets(path)
        missing = [column for column in REQUIRED if column not in header]
        if "image" not in header and "image_path" not in header:
            missing.append("image (or image_path)")
        if benchmark == "ocrbench" and "category" not in header:
            missing.append("category")
        if missing:
            raise MetaError(
                f"{path}: not a VLMEvalKit benchmark file: no column {', '.join(missing)} (it has {header})"
            )
        self._header = header
        self._category = "category" if benchmark == "ocrbench" else "split" if "split" in header else None
        # The `index` values, sorted for a binary search, to follow image references.
        order = np.argsort(keys, kind="stable")
        self._keys, self._key_rows = keys[order], order
        if len(self) == 0:
            raise MetaError(f"{path}: the TSV file holds a header and no rows")

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def _fields(self, index: int) -> dict[str, str]:
        where = self._where(index)
        with self.path.open("rb") as file:
            file.seek(int(self._offsets[index]))
            raw = file.read(int(self._offsets[index + 1] - self._offsets[index]))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadSample("malformed_json", where, f"not UTF-8 ({error.reason} at byte {error.start})") from None
        limit = csv.field_size_limit()
        csv.field_size_limit(sys.maxsize)  # base64 images are far longer than csv's default field limit
        try:
            values = next(csv.reader(io.StringIO(text), delimiter="\t"))
        except (csv.Error, StopIteration) as error:
            raise BadSample("malformed_json", where, f"not a TSV row: {error}") from None
        finally:
            csv.field_size_limit(limit)
        if len(values) != len(self._header):
            raise BadSample("malformed_json", where, f"{len(values)} fields for the header's {len(self._header)}")
        return dict(zip(self._header, values))

    def _where(self, index: int) -> str:
        return f"{self.path} row {index + 1}"

    def _image(self, fields: dict[str, str], where: str, depth: int = 0) -> Path | bytes:
        value = fields.get("image", "")
        if not value and fields.get("image_path"):
            path = Path(fields["image_path"])
            return path if path.is_absolute() else self.path.parent / path
        if not value:
            raise BadSample("image_error", where, "no image")
        if len(value) <= MAX_REFERENCE:
            if depth:
                raise BadSample("image_error", where, f"image refers to row index {value!r}, which refers on again")
            key = int(value) if self._keys.dtype == np.int64 and value.isdigit() else value
            found = (
                int(np.searchsorted(self._keys, key))
                if isinstance(key, int) or self._keys.dtype != np.int64
                else len(self._keys)
            )
            if found >= len(self._keys) or self._keys[found] != key:
                raise BadSample("image_error", where, f"image refers to row index {value!r}, which no row has")
            return self._image(self._fields(int(self._key_rows[found])), where, depth + 1)
        if value.startswith("["):
            raise BadSample(
                "image_mismatch", where, "several images in one row; these benchmarks have one per question"
            )
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as error:
            raise BadSample("image_error", where, f"image is not base64: {error}") from None

    def row(self, index: int) -> BenchmarkRow:
        where = self._where(index)
        fields = self._fields(index)
        answer = fields["answer"]
        if answer.startswith("[") and answer.endswith("]"):
            try:
                answer = ast.literal_eval(answer)
            except (ValueError, SyntaxError) as error:
                raise BadSample(
                    "malformed_json", where, f"answer {answer[:60]!r} is not a list literal: {error}"
                ) from None
        category = fields.get(self._category) if self._category else None
        return BenchmarkRow(
            id=text_field(fields, "index", where),
            question=text_field(fields, "question", where),
            answers=answer_list(answer, "answer", where),
            image=self._image(fields, where),
            where=where,
            category=category or None,
        )
