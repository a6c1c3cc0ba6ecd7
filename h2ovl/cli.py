"""The `h2ovl` command: one entry point whose subcommands each hand off to the module that does the work.

    h2ovl preview IMAGE --preprocessor {fixed,dynamic,msac} [--max-tiles N] [--tile-size T]
                  [--no-thumbnail] [--fast-path] [--out PNG] [--json]
    h2ovl demo [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from h2ovl.preprocessing import (
    MSAC,
    DynamicResolution,
    FixedResize,
    ImageLoadError,
    ImagePreprocessor,
    tokens_per_tile,
)


def build_preprocessor(name: str, tile_size: int, max_tiles: int, use_thumbnail: bool, fast_path: bool) -> ImagePreprocessor:
    """The preprocessor a short CLI name stands for (configs use `class_path` instead)."""
    if name == "fixed":
        return FixedResize(tile_size=tile_size, fast_path=fast_path)
    if name == "dynamic":
        return DynamicResolution(
            tile_size=tile_size, max_tiles=max_tiles, use_thumbnail=use_thumbnail, fast_path=fast_path
        )
    if name == "msac":
        return MSAC(tile_size=tile_size, max_tiles=max_tiles, use_thumbnail=use_thumbnail, fast_path=fast_path)
    raise ValueError(f"unknown preprocessor {name!r}: choose fixed, dynamic or msac")


def _preview(args: argparse.Namespace) -> int:
    from h2ovl.preprocessing.preview import preview_summary, render_preview

    preprocessor = build_preprocessor(
        args.preprocessor, args.tile_size, args.max_tiles, not args.no_thumbnail, args.fast_path
    )
    picture, tiled = render_preview(args.image, preprocessor)
    summary = preview_summary(preprocessor, tiled, tokens_per_tile(args.tile_size, args.patch_size, 0.5))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        picture.save(args.out)
        summary["preview"] = str(args.out)
    if args.json:
        print(json.dumps(summary))
    else:
        grids = ", ".join(f"{k} {v[0]}x{v[1]}" for k, v in summary.items() if k.endswith("grid"))
        print(f"{args.image}: {summary['image_size'][0]}x{summary['image_size'][1]} -> {grids}; "
              f"{summary['n_tiles']} tiles, {summary['n_tokens']} visual tokens (pixel shuffle on)")
        if args.out:
            print(f"preview written to {args.out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from h2ovl.demo.preprocessing import run_preprocessing_demo

    run_preprocessing_demo(args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="h2ovl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    preview = commands.add_parser("preview", help="draw the tiling of one image and print its facts")
    preview.add_argument("image", type=Path)
    preview.add_argument("--preprocessor", choices=("fixed", "dynamic", "msac"), default="dynamic")
    preview.add_argument("--max-tiles", type=int, default=6)
    preview.add_argument("--tile-size", type=int, default=448)
    preview.add_argument("--patch-size", type=int, default=14, help="ViT patch size, for the visual-token count")
    preview.add_argument("--no-thumbnail", action="store_true")
    preview.add_argument("--fast-path", action="store_true", help="reduced-scale JPEG decoding (see README)")
    preview.add_argument("--out", type=Path, help="where to write the preview PNG")
    preview.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    preview.set_defaults(handler=_preview)

    demo = commands.add_parser("demo", help="the README's main job on the embedded defaults")
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"))
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ImageLoadError, ValueError) as err:
        print(f"h2ovl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
