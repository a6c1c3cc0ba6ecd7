"""The preprocessing demo: every preprocessor on every sample image, previews and a summary table."""

from __future__ import annotations

import json
from pathlib import Path

from h2ovl.demo.sample_images import write_sample_images
from h2ovl.preprocessing import MSAC, DynamicResolution, FixedResize, ImagePreprocessor, tokens_per_tile
from h2ovl.preprocessing.preview import preview_summary, render_preview

# Released-model settings: 448 px tiles, patch 14, pixel shuffle 0.5 -> 256 tokens per tile.
_PATCH, _RATIO = 14, 0.5


def run_preprocessing_demo(out_dir: Path, tile_size: int = 448, max_tiles: int = 6) -> list[dict]:
    preprocessors: dict[str, ImagePreprocessor] = {
        "fixed": FixedResize(tile_size=tile_size),
        "dynamic": DynamicResolution(tile_size=tile_size, max_tiles=max_tiles),
        "msac": MSAC(tile_size=tile_size, max_tiles=max_tiles),
    }
    per_tile = tokens_per_tile(tile_size, _PATCH, _RATIO)
    images = write_sample_images(out_dir / "images")
    rows = []
    print(f"{'image':<22} {'size':>10} | " + " | ".join(f"{n:^22}" for n in preprocessors))
    for path in images:
        row: dict = {"image": path.name}
        cells = []
        for name, preprocessor in preprocessors.items():
            picture, tiled = render_preview(path, preprocessor)
            preview_path = out_dir / "previews" / f"{path.stem}.{name}.png"
            preview_path.parent.mkdir(parents=True, exist_ok=True)
            picture.save(preview_path)
            summary = preview_summary(preprocessor, tiled, per_tile)
            summary["preview"] = str(preview_path)
            row[name] = summary
            grid = "+".join(f"{summary[k][0]}x{summary[k][1]}" for k in ("fine_grid", "coarse_grid") if k in summary)
            cells.append(
                f"{grid or '{}x{}'.format(*summary['grid']):>7} {summary['n_tiles']:>2}t {summary['n_tokens']:>5}tok"
            )
        size = "x".join(map(str, row["fixed"]["image_size"]))
        print(f"{path.stem:<22} {size:>10} | " + " | ".join(f"{c:^22}" for c in cells))
        rows.append(row)
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(rows, indent=2))
    print(f"\npreviews: {out_dir / 'previews'}\nsummary:  {summary_path}")
    return rows
