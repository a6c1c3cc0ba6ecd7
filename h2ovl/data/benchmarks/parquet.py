"""The Hugging Face parquet mirrors that lmms-eval loads, read a row group at a time (never whole).

Files are as `datasets` writes them (`<split>-00000-of-00003.parquet`, images as `{bytes, path}` structs):
- `echo840/OCRBench`: `dataset, question, question_type, answer` (a list), `image`;
- `lmms-lab/textvqa`: `image_id, question_id, question, question_tokens, image, image_width, image_height,
  flickr_original_url, flickr_300k_url, answers, image_classes, set_name, ocr_tokens`;
- `lmms-lab/DocVQA`, config DocVQA: `questionId, question, question_types, image, docId, ucsf_document_id,
  ucsf_document_page_no, answers, data_split`;
- `lmms-lab/DocVQA`, config InfographicVQA: `questionId, question, answers, answer_type, image, image_url,
  operation/reasoning, ocr, data_split`;
- `lmms-lab/ChartQA`: `type` (`human_test` / `augmented_test`), `question, answer, image`.
The benchmark is told by the columns. A folder or glob may hold one split's shards; several splits (a
validation and a test split side by side) must be told apart by naming the files.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

from h2ovl.data.benchmarks.rows import BenchmarkRow, answer_list, text_field
from h2ovl.data.meta import MetaError
from h2ovl.data.parquet_shards import parquet_files
from h2ovl.data.schemas import image_source

#: benchmark -> (columns that identify it, id column or None for the row's position, answers column, category column)
SCHEMAS: dict[str, tuple[frozenset[str], str | None, str, str | None]] = {
    "ocrbench": (
        frozenset({"dataset", "question", "question_type", "answer", "image"}),
        None,
        "answer",
        "question_type",
    ),
    "textvqa": (
        frozenset({"question_id", "image_id", "question", "answers", "image", "flickr_300k_url"}),
        "question_id",
        "answers",
        None,
    ),
    "docvqa": (
        frozenset({"questionId", "question", "question_types", "docId", "ucsf_document_id", "answers", "image"}),
        "questionId",
        "answers",
        None,
    ),
    "infovqa": (
        frozenset({"questionId", "question", "answers", "answer_type", "image_url", "image"}),
        "questionId",
        "answers",
        None,
    ),
    "chartqa": (frozenset({"type", "question", "answer", "image"}), None, "answer", "type"),
}


def recognise(columns: set[str]) -> str | None:
    found = [name for name, (needed, *_) in SCHEMAS.items() if needed <= columns]
    return found[0] if len(found) == 1 else None


class ParquetRows:
    own_ids = True

    def __init__(self, path: str, benchmark: str | None = None) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.files = parquet_files(path)
        counts, columns = [], None
        for file in self.files:
            try:
                meta = pq.ParquetFile(file)
            except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a bad file
                raise MetaError(f"{file}: not a parquet file ({error})") from None
            names = set(meta.schema_arrow.names)
            if columns is not None and names != columns:
                raise MetaError(f"{file}: its columns differ from {self.files[0]}'s: not shards of one dataset")
            columns = names
            counts += [(file, group, meta.metadata.row_group(group).num_rows) for group in range(meta.num_row_groups)]
        found = recognise(columns)
        if benchmark is None and found is None:
            raise MetaError(
                f"{path}: parquet columns {sorted(columns)} are none of the Hugging Face benchmark mirrors h2ovl "
                f"reads ({sorted(SCHEMAS)}); pass --benchmark if it is one of them under other names"
            )
        self.benchmark = benchmark or found
        needed, self._id, self._answers, self._category = SCHEMAS[self.benchmark]
        if missing := sorted(needed - columns):
            raise MetaError(f"{path}: the {self.benchmark} mirror has columns {sorted(needed)}; missing {missing}")
        self._columns = sorted({"question", "image", self._answers} | {c for c in (self._id, self._category) if c})
        self._groups = [(file, group) for file, group, _ in counts]
        self._starts, total = [], 0
        for _, _, n in counts:
            self._starts.append(total)
            total += n
        self._total = total
        self._file_starts: dict[Path, int] = {}  # each file's first row, for "<file> row <n>" in messages
        for (file, _), start in zip(self._groups, self._starts):
            self._file_starts.setdefault(file, start)
        self._cached: tuple[int, list[dict[str, Any]]] | None = None
        self._open: tuple[Path, Any] | None = None
        if total == 0:
            raise MetaError(f"{path}: the parquet files hold no rows")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cached": None, "_open": None}  # workers open and read their own row groups

    def __len__(self) -> int:
        return self._total

    def _group_rows(self, group: int) -> list[dict[str, Any]]:
        """One row group's rows, the last group kept: evaluation reads in order, so each group is read once."""
        if self._cached is None or self._cached[0] != group:
            import pyarrow as pa
            import pyarrow.parquet as pq

            file, index = self._groups[group]
            if self._open is None or self._open[0] != file:
                self._open = (file, pq.ParquetFile(file))
            self._cached = None  # the previous group's rows go before the next are read
            self._cached = (group, self._open[1].read_row_group(index, columns=self._columns).to_pylist())
            pa.default_memory_pool().release_unused()  # the group's Arrow buffers, now Python objects
        return self._cached[1]

    def row(self, index: int) -> BenchmarkRow:
        group = bisect.bisect_right(self._starts, index) - 1
        local = index - self._starts[group]
        file = self._groups[group][0]
        where = f"{file} row {index - self._file_starts[file] + 1}"
        raw = self._group_rows(group)[local]
        source = image_source(raw.get("image"), file.parent, where)
        id_ = str(raw[self._id]) if self._id else str(index)
        category = raw.get(self._category) if self._category else None
        return BenchmarkRow(
            id=id_,
            question=text_field(raw, "question", where),
            answers=answer_list(raw.get(self._answers), self._answers, where),
            image=source,
            where=where,
            category=category,
        )
