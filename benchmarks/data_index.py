"""The data pipeline at the paper's scale, on one machine: a generated JSON Lines annotation of 10M records is
indexed (time, peak memory of the indexing process), opened again from its cache, and read by a process
as a loader worker would (private memory per record); then the whole pipeline - decode, MSAC tiles at
448 px, tokens, batch - runs on one core over realistic images (document pages, 4:3 photos, wide strips).

Goals (issue 35): index memory <= 16 bytes a record per process; >= 12 MSAC samples/s per core. Each
measurement runs in a fresh process (peak from /proc's VmHWM, private memory from RssAnon).
Last line: one JSON object with the figures.

    python benchmarks/data_index.py [--records 10000000] [--samples 96] [--out DIR (keep the data)]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGES = [
    ("page", 1240, 1754),
    ("page", 1654, 2339),
    ("photo", 1024, 768),
    ("photo", 1600, 1200),
    ("strip", 2000, 500),
    ("strip", 1800, 300),
    ("page", 1000, 1414),
    ("photo", 800, 600),
]


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def write_data(folder: Path, records: int) -> Path:
    """Images drawn like documents (text lines on paper), and `records` conversations referencing them."""
    from PIL import Image, ImageDraw

    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for i, (kind, width, height) in enumerate(IMAGES):
        image = Image.new("RGB", (width, height), (250, 250, 245) if kind != "photo" else (90, 120, 160))
        draw = ImageDraw.Draw(image)
        for y in range(20, height - 20, 28):
            draw.text((20, y), " ".join(str(rng.randint(0, 10**6)) for _ in range(width // 90)), fill=(10, 10, 10))
        image.save(folder / "images" / f"{i}.jpg", quality=90)
    path = folder / "train.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for r in range(records):
            out.write(
                json.dumps(
                    {
                        "id": f"r{r}",
                        "image": f"images/{r % len(IMAGES)}.jpg",
                        "conversations": [
                            {"from": "human", "value": "<image>\nWhat is the total amount on this document?"},
                            {"from": "gpt", "value": f"The total is {r % 9973}.{r % 100:02d}."},
                        ],
                    }
                )
                + "\n"
            )
    return path


def child_index(path: str) -> None:
    from h2ovl.data import line_index

    base = _status_mb("VmRSS")
    start = time.perf_counter()
    index = line_index.line_index(Path(path))
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"records": len(index), "seconds": round(seconds, 1), "peak_mb": round(_status_mb("VmHWM") - base, 1)}
        )
    )


def child_worker(path: str, reads: int) -> None:
    """A loader worker's view: open the source (cached index, memory-mapped) and read records at random."""
    from h2ovl.data.meta import load_mixture
    from h2ovl.data.sources import open_source

    anon_before = _status_mb("RssAnon")
    start = time.perf_counter()
    source = open_source(load_mixture(path)[0])
    opened = time.perf_counter() - start
    rng = random.Random(1)
    for _ in range(reads):
        source.load(rng.randrange(len(source)))
    private = _status_mb("RssAnon") - anon_before
    print(
        json.dumps(
            {
                "records": len(source),
                "open_seconds": round(opened, 2),
                "private_mb": round(private, 1),
                "private_bytes_per_record": round(private * 2**20 / len(source), 2),
            }
        )
    )


def child_pipeline(path: str, samples: int, fast_path: bool) -> None:
    import torch

    torch.set_num_threads(1)
    from h2ovl.data.meta import load_mixture
    from h2ovl.data.packing import collate_rows
    from h2ovl.data.samples import SampleBuilder
    from h2ovl.data.sources import open_source
    from h2ovl.data.template import ConversationEncoder
    from h2ovl.model.tokenizer import build_tiny_tokenizer
    from h2ovl.preprocessing import MSAC

    tokenizer = build_tiny_tokenizer()
    builder = SampleBuilder(
        [open_source(load_mixture(path)[0])],
        MSAC(tile_size=448, max_tiles=6, fast_path=fast_path),
        ConversationEncoder(tokenizer, 8192),
        tokens_per_tile=256,
    )
    builder.build(0, 0)  # warm up
    start, tiles, batch = time.perf_counter(), 0, []
    for i in range(samples):
        sample = builder.build(0, i)
        tiles += sample.n_tiles
        batch.append([sample])
        if len(batch) == 8:
            collate_rows(batch, tokenizer.pad_token_id, packed=False)
            batch = []
    seconds = time.perf_counter() - start
    print(json.dumps({"samples_per_s": round(samples / seconds, 2), "mean_tiles": round(tiles / samples, 2)}))


def run(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--out", type=Path, help="keep the generated data here (default: a temporary folder)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        {
            "index": lambda: child_index(rest[0]),
            "worker": lambda: child_worker(rest[0], int(rest[1])),
            "pipeline": lambda: child_pipeline(rest[0], int(rest[1]), rest[2] == "fast"),
        }[kind]()
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out or Path(scratch)
        start = time.perf_counter()
        path = folder / "train.jsonl" if (folder / "train.jsonl").is_file() else write_data(folder, args.records)
        print(f"data: {path} ({path.stat().st_size / 2**30:.2f} GiB, written in {time.perf_counter() - start:.0f} s)")
        for old in folder.glob(".train.jsonl.index-*"):
            old.unlink()  # a cold index
        cold = run("--child", "index", str(path))
        print(
            f"index, cold: {cold['records']:,} records in {cold['seconds']} s, peak {cold['peak_mb']} MB "
            f"({cold['peak_mb'] * 2**20 / cold['records']:.1f} bytes a record, once)"
        )
        worker = run("--child", "worker", str(path), "10000")
        print(
            f"a worker (cached index, 10,000 random reads): opened in {worker['open_seconds']} s, private memory "
            f"{worker['private_mb']} MB = {worker['private_bytes_per_record']} bytes a record (goal <= 16)"
        )
        rates = {mode: run("--child", "pipeline", str(path), str(args.samples), mode) for mode in ("exact", "fast")}
        for mode, rate in rates.items():
            print(
                f"pipeline, one core, MSAC 448 ({mode} decoding): {rate['samples_per_s']} samples/s "
                f"({rate['mean_tiles']} tiles a sample; goal >= 12)"
            )
        print(
            json.dumps(
                {
                    "benchmark": "data_index",
                    "records": cold["records"],
                    "file_gib": round(path.stat().st_size / 2**30, 2),
                    "index": cold,
                    "worker": worker,
                    "pipeline": rates,
                }
            )
        )


if __name__ == "__main__":
    main()
