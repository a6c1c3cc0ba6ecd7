"""Preprocessing speed: encoded image files -> model-ready (normalised) tiles, on one core.

Three pipelines on the same generated images (300x200 .. 4000x3000, JPEG and PNG), timed in one run:
  (a) reference: InternVL-style - decode, resize, PIL crop per tile, per-tile ToTensor + Normalize;
  (b) default:   our `ImagePreprocessor` (uint8 tiles by array slicing) + `TileNormalizer`;
  (c) fast:      the same with `fast_path=True` (reduced-scale JPEG decode, torch's uint8 resize).
(b) must give identical pixels to (a) and be no slower; (c) is reported with its mean absolute pixel
difference (grey levels, 0..255) from (a). The last line printed is one JSON object.

    python benchmarks/preprocess.py [--repeats 3] [--preprocessor dynamic|msac]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from h2ovl.demo.sample_images import render_document
from h2ovl.preprocessing import MSAC, DynamicResolution, ImagePreprocessor, TileNormalizer
from h2ovl.preprocessing.reference import reference_pixel_values

SIZES = [
    (300, 200),
    (640, 480),
    (800, 1100),
    (1024, 768),
    (1240, 1754),
    (1920, 1080),
    (3000, 800),
    (2480, 3508),
    (4000, 3000),
]


def write_images(folder: Path) -> list[Path]:
    paths = []
    for index, (width, height) in enumerate(SIZES):
        page = render_document(width, height, seed=index)
        for suffix, options in ((".jpg", {"quality": 90}), (".png", {})):
            path = folder / f"doc_{width}x{height}{suffix}"
            page.save(path, **options)
            paths.append(path)
    return paths


def best_time(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preprocessor", choices=("dynamic", "msac"), default="dynamic")
    args = parser.parse_args()

    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    kind = {"dynamic": DynamicResolution, "msac": MSAC}[args.preprocessor]
    default: ImagePreprocessor = kind()
    fast: ImagePreprocessor = kind(fast_path=True)
    normalize = TileNormalizer()

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp))

        def reference_one(path: Path) -> torch.Tensor:
            image = Image.open(path).convert("RGB")
            return reference_pixel_values(image, default.plan(*image.size), default.tile_size)

        def ours(preprocessor: ImagePreprocessor, path: Path) -> torch.Tensor:
            return normalize(preprocessor(path).tiles)

        identical = all(torch.equal(reference_one(p), ours(default, p)) for p in paths)
        diffs = [(default(p).tiles.float() - fast(p).tiles.float()).abs().mean().item() for p in paths]
        n_tiles = sum(default(p).n_tiles for p in paths)

        timings = {"reference": 0.0, "default": 0.0, "fast": 0.0}
        for path in paths:  # per image, interleaved, so drift in machine load hits all three alike
            timings["reference"] += best_time(lambda path=path: reference_one(path), args.repeats)
            timings["default"] += best_time(lambda path=path: ours(default, path), args.repeats)
            timings["fast"] += best_time(lambda path=path: ours(fast, path), args.repeats)

    rate = {name: len(paths) / seconds for name, seconds in timings.items()}
    print(
        f"{len(paths)} images ({len(SIZES)} sizes x JPEG/PNG), {n_tiles} tiles, {args.preprocessor}, one core, best of {args.repeats}"
    )
    for name in timings:
        print(f"  {name:<9} {rate[name]:7.2f} images/s  ({timings[name] * 1e3 / len(paths):6.1f} ms/image)")
    result = {
        "preprocessor": args.preprocessor,
        "images": len(paths),
        "reference_images_per_s": round(rate["reference"], 3),
        "default_images_per_s": round(rate["default"], 3),
        "fast_images_per_s": round(rate["fast"], 3),
        "default_speedup": round(rate["default"] / rate["reference"], 3),
        "fast_speedup": round(rate["fast"] / rate["reference"], 3),
        "fast_mean_abs_diff": round(sum(diffs) / len(diffs), 4),
        "fast_max_image_mean_abs_diff": round(max(diffs), 4),
        "identical": identical,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
