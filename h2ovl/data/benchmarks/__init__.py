"""Benchmarks as users download them, read without conversion: OCRBench, TextVQA, DocVQA, InfographicVQA
and ChartQA, each in its official release files with their image folders (`official`), in VLMEvalKit's TSV
files (`tsv`) or in the Hugging Face parquet mirrors lmms-eval loads (`parquet`).

`open_benchmark` recognises the layout and the benchmark from the file (a name given as `benchmark`
overrides what the file says); a file that is a benchmark layout we do not know is refused by name, and a
file that is none (a meta file, a jsonl of records) is left to the mixture reader. A `BenchmarkSource`
serves the questions as records, each with its image, its references, its scorer and the benchmark's own
id, the question worded as the chosen `Protocol` words it.
"""

from __future__ import annotations

from pathlib import Path

from h2ovl.data.benchmarks.catalog import BENCHMARKS, PROTOCOLS, Benchmark, Protocol, benchmark, protocol
from h2ovl.data.benchmarks.official import open_official
from h2ovl.data.benchmarks.parquet import ParquetRows
from h2ovl.data.benchmarks.rows import BenchmarkRow, BenchmarkRows
from h2ovl.data.benchmarks.tsv import VLMEvalKitRows
from h2ovl.data.meta import DatasetSpec, MetaError
from h2ovl.data.records import Record, to_record
from h2ovl.preprocessing.image_io import ImageSource

__all__ = [
    "BENCHMARKS",
    "PROTOCOLS",
    "Benchmark",
    "BenchmarkRow",
    "BenchmarkSource",
    "Protocol",
    "benchmark",
    "open_benchmark",
    "protocol",
]


class BenchmarkSource:
    """A `RecordSource` over a benchmark's questions: record `id` is the benchmark's id, `scorer` its task,
    `category` its question type or split."""

    def __init__(self, rows: BenchmarkRows, bench: Benchmark, how: Protocol) -> None:
        self.rows = rows
        self.benchmark = bench
        self.protocol = how
        self.spec = DatasetSpec(name=bench.name, annotation=str(rows.path), root=str(rows.path.parent))

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int) -> tuple[Record, list[ImageSource]]:
        row = self.rows.row(index)
        # `image` names the question's one image for the record (it puts the <image> placeholder first).
        image = str(row.image) if isinstance(row.image, Path) else f"<image of {row.where}>"
        raw = {
            "id": row.id,
            "image": image,
            "question": row.question + self.protocol.prompt_suffix,
            "answers": list(row.answers),
            "scorer": self.benchmark.task,
            **({"category": row.category} if row.category else {}),
        }
        return to_record(raw, row.where), [row.image]


def _tsv_benchmark(path: Path, named: str | None) -> str:
    by_stem = {b.vlmevalkit.lower(): b.name for b in BENCHMARKS.values()}
    found = by_stem.get(path.stem.lower())
    if named is None and found is None:
        raise MetaError(
            f"{path}: cannot tell which benchmark this TSV is: VLMEvalKit names them "
            f"{[b.vlmevalkit + '.tsv' for b in BENCHMARKS.values()]}; rename it or pass --benchmark"
        )
    if named is not None and found is not None and named != found:
        raise MetaError(f"{path}: VLMEvalKit's {path.name} is {found}, not {named}")
    return named or found


def open_benchmark(
    path: str | Path, name: str | None = None, images: str | Path | None = None, protocol_name: str = "plain"
) -> BenchmarkSource | None:
    """The benchmark at `path`, or None when `path` is no benchmark layout (and `name` is None)."""
    how = protocol(protocol_name)
    if name is not None:
        benchmark(name)  # an unknown name is an error before any file is read
    text = str(path)
    path = Path(path).expanduser()
    images = Path(images).expanduser() if images is not None else None
    rows: BenchmarkRows | None
    if path.suffix == ".tsv":
        rows = VLMEvalKitRows(path, _tsv_benchmark(path, name))
    elif (
        path.suffix == ".parquet" or any(ch in text for ch in "*?[") or (path.is_dir() and any(path.rglob("*.parquet")))
    ):
        rows = ParquetRows(text, name)
    elif path.is_dir() or path.suffix == ".json":
        if not path.exists():
            raise MetaError(f"data file {path} does not exist")
        rows = open_official(path, images)
        if rows is None and path.is_dir():
            raise MetaError(
                f"{path}: a folder, but no benchmark layout h2ovl reads (parquet shards, or ChartQA's "
                "test_human.json/test_augmented.json)"
            )
    else:
        rows = None
    if rows is None:
        if name is not None:
            raise MetaError(
                f"{path}: --benchmark {name} given, but the file is none of its layouts (official release "
                "JSON, VLMEvalKit TSV, Hugging Face parquet)"
            )
        return None
    found = rows.benchmark
    if name is not None and name != found:
        raise MetaError(f"{path}: the file is {found}'s layout, not {name}'s")
    return BenchmarkSource(rows, BENCHMARKS[found], how)
