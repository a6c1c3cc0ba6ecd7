"""Benchmark files streamed: peak memory of reading every question of a VLMEvalKit TSV and of a Hugging Face
parquet mirror with h2ovl's readers, against reading the whole file into memory (pandas' `read_csv`, as
VLMEvalKit loads its TSVs; pyarrow's `read_table`) in the same run, at growing row counts.

Each measurement runs in a fresh process: its peak resident memory (VmHWM) minus its resident memory after
the imports is what reading cost. Rows carry a ~3 KB JPEG each (distinct bytes) (DocVQA-like questions, base64 in the TSV,
{bytes, path} structs in parquet row groups of 100). Goal: h2ovl's peak flat in the number of rows (the
index is 16 bytes a row), the whole-file readers' growing with the file.
Last line: one JSON object with the figures.

    python benchmarks/eval_files.py [--rows 2000 10000 40000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status. VmHWM (peak resident) starts afresh at
    exec, unlike ru_maxrss, which a child started by fork inherits from its parent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(reader: str, path: str) -> None:
    """Read every question (h2ovl) or the whole file (pandas/pyarrow); print peak MB above the imports."""
    import pandas as pd
    import pyarrow.parquet as pq

    from h2ovl.data.benchmarks import open_benchmark

    base = _status_mb("VmRSS")
    start = time.perf_counter()
    if reader == "h2ovl":
        source = open_benchmark(path)
        total = 0
        for index in range(len(source)):
            _, images = source.load(index)
            total += len(images[0])
        rows = len(source)
    elif path.endswith(".tsv"):
        frame = pd.read_csv(path, sep="\t")
        rows, total = len(frame), int(frame["image"].str.len().sum())
    else:
        table = pq.read_table(path)
        rows, total = table.num_rows, table.nbytes
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    print(json.dumps({"peak_mb": round(peak - base, 1), "rows": rows, "seconds": round(seconds, 2), "checksum": total}))


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    import base64
    import io

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    rng = np.random.default_rng(1)
    # Every row its own bytes (decoders ignore what follows a JPEG's end marker), so nothing compresses away.
    jpegs = [buffer.getvalue() + rng.bytes(1024) for _ in range(rows)]
    encoded = [base64.b64encode(jpeg).decode("ascii") for jpeg in jpegs]
    questions = [f"What is the total on page {i}?" for i in range(rows)]
    answers = [str([f"{i}.50", f"${i}.50"]) for i in range(rows)]
    tsv = folder / "DocVQA_VAL.tsv"
    pd.DataFrame({"index": range(rows), "image": encoded, "question": questions, "answer": answers}).to_csv(
        tsv, sep="\t", index=False
    )
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [
            ("questionId", pa.string()),
            ("question", pa.string()),
            ("question_types", pa.list_(pa.string())),
            ("image", image),
            ("docId", pa.int64()),
            ("ucsf_document_id", pa.string()),
            ("ucsf_document_page_no", pa.string()),
            ("answers", pa.list_(pa.string())),
            ("data_split", pa.string()),
        ]
    )
    table = pa.table(
        {
            "questionId": [str(49153 + i) for i in range(rows)],
            "question": questions,
            "question_types": [["form"]] * rows,
            "image": [{"bytes": jpeg, "path": None} for jpeg in jpegs],
            "docId": list(range(rows)),
            "ucsf_document_id": ["x"] * rows,
            "ucsf_document_page_no": ["1"] * rows,
            "answers": [[f"{i}.50"] for i in range(rows)],
            "data_split": ["val"] * rows,
        },
        schema=schema,
    )
    parquet = folder / "DocVQA" / "validation-00000-of-00001.parquet"
    parquet.parent.mkdir()
    pq.write_table(table, parquet, row_group_size=100)
    return tsv, parquet


def measure(reader: str, path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", reader, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 10000, 40000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    results = []
    print(f"{'layout':<8} {'rows':>7} {'file MB':>8} {'h2ovl MB':>9} {'whole MB':>9} {'ratio':>6} {'h2ovl rows/s':>13}")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as scratch:
            for layout, path in zip(("tsv", "parquet"), write_files(Path(scratch), rows)):
                ours, whole = measure("h2ovl", path), measure("whole", path)
                assert ours["rows"] == whole["rows"] == rows
                row = {
                    "layout": layout,
                    "rows": rows,
                    "file_mb": round(path.stat().st_size / 2**20, 1),
                    "h2ovl_peak_mb": ours["peak_mb"],
                    "whole_file_peak_mb": whole["peak_mb"],
                    "h2ovl_rows_per_s": round(rows / ours["seconds"]),
                }
                results.append(row)
                ratio = row["whole_file_peak_mb"] / max(row["h2ovl_peak_mb"], 0.1)
                print(
                    f"{layout:<8} {rows:>7} {row['file_mb']:>8} {row['h2ovl_peak_mb']:>9} {row['whole_file_peak_mb']:>9} {ratio:>6.1f} "
                    f"{row['h2ovl_rows_per_s']:>13}"
                )
    print(json.dumps({"benchmark": "eval_files", "results": results}))


if __name__ == "__main__":
    main()
