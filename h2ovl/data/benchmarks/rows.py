"""One benchmark question as every layout reader returns it, and the checks its fields share.

Readers keep their files closed between rows and open them lazily, so a reader pickles into data-loader
workers; each returns `BenchmarkRow`s by position and raises `BadSample` (naming the file and row) for a
row it cannot use, so one bad row is a counted skip, never a crash of a long evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from h2ovl.data.records import BadSample


@dataclass(frozen=True)
class BenchmarkRow:
    id: str
    """The benchmark's own id of the question (its position where the benchmark has none)."""
    question: str
    answers: tuple[str, ...]
    image: Path | bytes
    where: str
    """The file and row, for error messages."""
    category: str | None = None
    """OCRBench's question type or ChartQA's split: what the benchmark reports separately."""


class BenchmarkRows(Protocol):
    path: Path
    """What the user named: a file or a folder."""
    own_ids: bool
    """Row ids are the benchmark's question ids (not a re-distributor's row numbers)."""

    def __len__(self) -> int: ...

    def row(self, index: int) -> BenchmarkRow: ...


def text_field(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadSample("malformed_json", where, f"{key!r} must be non-empty text, got {value!r}")
    return value


def answer_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    """A benchmark's references: one string or a list of strings, none blank."""
    answers = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise BadSample("empty_answer", where, f"{key!r} must be a non-empty answer or list of answers, got {value!r}")
    return tuple(answers)
