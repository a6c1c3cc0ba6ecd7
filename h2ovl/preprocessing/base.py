"""The one interface every image preprocessor implements, and the pixel work they all share.

A preprocessor only decides a `TilingPlan` from the image size: an ordered list of grids, each meaning
"resize the whole image to (cols*T, rows*T) and cut it into cols*rows tiles, row-major". Turning a plan
into pixels is shared here, so the three variants differ in their geometry and nothing else.

Tiles leave as uint8 `[n, 3, T, T]`: 4x less to move between data-loader processes than float32.
Normalisation is not done here; the model owns it (`TileNormalizer`) and runs it on its device.
"""

from __future__ import annotations

import copy
import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from h2ovl.errors import SettingError
from h2ovl.preprocessing.grids import Grid, tile_budget_per_image
from h2ovl.preprocessing.image_io import (
    DEFAULT_MAX_PIXELS,
    ImageSource,
    decode_rgb,
    describe_source,
    open_image,
    oriented_size,
    request_reduced_decode,
)
from h2ovl.preprocessing.render import render_exact, render_fast


@dataclass(frozen=True)
class TilingPlan:
    """What a preprocessor decided for one image, before any pixel is touched."""

    image_size: tuple[int, int]
    """(width, height) of the image as displayed (EXIF orientation applied)."""
    views: tuple[Grid, ...]
    """Grids in model order; the global thumbnail, when present, is the last (1, 1) view."""
    grids: dict[str, Grid] = field(default_factory=dict)
    """Named grids for logs and previews: {"grid"} for dynamic, {"grid", "coarse", "fine"} for MSAC."""
    has_thumbnail: bool = False

    @property
    def n_tiles(self) -> int:
        return sum(view.n_tiles for view in self.views)

    def n_tokens(self, tokens_per_tile: int) -> int:
        return self.n_tiles * tokens_per_tile


@dataclass(frozen=True)
class TiledImage:
    """Model-ready tiles of one image and the plan that produced them."""

    tiles: torch.Tensor  # uint8 [n_tiles, 3, T, T]
    plan: TilingPlan

    @property
    def n_tiles(self) -> int:
        return self.tiles.shape[0]

    def n_tokens(self, tokens_per_tile: int) -> int:
        return self.plan.n_tokens(tokens_per_tile)


class ImagePreprocessor(ABC):
    """Image -> tiles. Subclasses implement `plan`; loading and pixel work are shared.

    Args:
        tile_size: side T of the square tiles. Unset (None), a model's preprocessor makes the tiles its
            vision tower takes (`for_tile_size`); alone, 448, the released models'.
        max_pixels: images with more pixels than this are refused with an error naming the file.
        fast_path: opt-in speed path: reduced-scale JPEG decoding and torch's uint8 resize kernel
            instead of Pillow's. Tiles then differ from the reference pixels by well under one grey
            level on average (docs/results.md, benchmarks/preprocess.py); off, they are bit-identical.
    """

    def __init__(
        self, tile_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, fast_path: bool = False
    ) -> None:
        if tile_size is not None and tile_size < 1:
            raise SettingError(f"tile_size must be positive, got {tile_size}")
        self._tile_size = tile_size
        self.max_pixels = max_pixels
        self.fast_path = fast_path

    @property
    def tile_size(self) -> int:
        return DEFAULT_TILE_SIZE if self._tile_size is None else self._tile_size

    @property
    def tile_size_set(self) -> bool:
        """Whether a config chose the tile size (else the model's vision tower does)."""
        return self._tile_size is not None

    def for_tile_size(self, tile_size: int) -> ImagePreprocessor:
        """This preprocessor for a vision tower taking `tile_size` tiles: itself where a config set its tile
        size (a mismatch is then the caller's to report), else a copy making such tiles."""
        if self.tile_size_set:
            return self
        bound = copy.copy(self)
        bound._tile_size = tile_size
        return bound

    @property
    @abstractmethod
    def max_tiles(self) -> int:
        """The most tiles one image can get."""

    @abstractmethod
    def plan(self, width: int, height: int, max_tiles: int | None = None) -> TilingPlan:
        """The tiling of a `width` x `height` image; `max_tiles` overrides the configured budget."""

    def plan_in_sample(
        self, width: int, height: int, n_images: int, max_tiles: int | None = None, split_budget: bool = True
    ) -> TilingPlan:
        """The plan for one of `n_images` images in a sample. The tile budget (`max_tiles`, else the
        configured one; a dataset may lower it) is split across them as InternVL trains
        (`split_budget`), or given whole to each image, as the released models' inference code does."""
        budget = self.max_tiles if max_tiles is None else max_tiles
        if n_images <= 1 or not split_budget:
            return self.plan(width, height, max_tiles=max_tiles)
        return self.plan(width, height, max_tiles=tile_budget_per_image(budget, n_images))

    def __call__(
        self, source: ImageSource, n_images: int = 1, max_tiles: int | None = None, split_budget: bool = True
    ) -> TiledImage:
        image = open_image(source, self.max_pixels)
        width, height = oriented_size(image)
        plan = self.plan_in_sample(width, height, n_images, max_tiles, split_budget)
        if self.fast_path:
            largest = max(plan.views, key=lambda g: g.n_tiles)
            request_reduced_decode(image, (largest.cols * self.tile_size, largest.rows * self.tile_size))
        rgb = decode_rgb(image, describe_source(source))
        return TiledImage(tiles=self.render(rgb, plan), plan=plan)

    def process_sample(
        self, sources: Sequence[ImageSource], max_tiles: int | None = None, split_budget: bool = True
    ) -> list[TiledImage]:
        """All images of one sample, applying the multi-image tile-budget rule (`plan_in_sample`)."""
        return [
            self(source, n_images=len(sources), max_tiles=max_tiles, split_budget=split_budget) for source in sources
        ]

    def render(self, image: Image.Image, plan: TilingPlan) -> torch.Tensor:
        """The tiles of `plan` cut from a decoded RGB image."""
        render = render_fast if self.fast_path else render_exact
        return render(image, plan.views, self.tile_size)

    def config(self) -> dict[str, Any]:
        """The `class_path`/`init_args` form this preprocessor is built from (how a model config and a
        checkpoint record it); every constructor argument is kept as an attribute of the same name."""
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        # An unset tile size stays unset: the model that loads this config supplies its own.
        names = [n for n in names if n != "tile_size" or self.tile_size_set]
        return {
            "class_path": f"h2ovl.preprocessing.{type(self).__name__}",
            "init_args": {n: getattr(self, n) for n in names},
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


#: The tile side of the released models: a preprocessor's tiles when neither a config nor a model sets it.
DEFAULT_TILE_SIZE = 448

#: the names the docs and the command line use, for the three preprocessors of the ablation
SHORT_NAMES = {"fixed": "FixedResize", "dynamic": "DynamicResolution", "msac": "MSAC"}
#: the class names a bare name may give besides the short names
_CLASS_NAMES = (*SHORT_NAMES.values(), "MixedViews")
_NAMED = ", ".join(f"{short} ({name})" for short, name in SHORT_NAMES.items()) + ", MixedViews"


def preprocessor_class_path(name: str) -> str:
    """A short name's class path (`msac` -> `h2ovl.preprocessing.MSAC`); a class name of ours or a dotted
    class path as given; any other bare name is refused, naming the valid ones (jsonargparse would say
    only that it is not an import path)."""
    if name.lower() in SHORT_NAMES:
        return f"h2ovl.preprocessing.{SHORT_NAMES[name.lower()]}"
    if "." not in name and name not in _CLASS_NAMES:
        raise SettingError(f"{name!r} is not a preprocessor: name one of {_NAMED} or a class path of one")
    return name


def instantiate_preprocessor(config: dict[str, Any] | str) -> ImagePreprocessor:
    """The one way a preprocessor is built from its description, in configs, checkpoints and on the
    command line alike: a `class_path`/`init_args` mapping (the form `config()` returns), or just a class
    path; jsonargparse resolves a bare class name of a known subclass (`MSAC`) too, and the short names
    `fixed`, `dynamic` and `msac` are taken for theirs."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--preprocessor", type=ImagePreprocessor)
    described = {"class_path": config} if isinstance(config, str) else dict(config)
    if isinstance(described.get("class_path"), str):
        described["class_path"] = preprocessor_class_path(described["class_path"])
    try:
        return parser.instantiate(parser.parse_object({"preprocessor": described})).preprocessor
    except Exception as error:  # noqa: BLE001 - jsonargparse's own errors name the path and value
        raise SettingError(
            f"cannot build a preprocessor from {described!r}: {str(error).strip().splitlines()[0]}; "
            f"name one of {_NAMED} or a class path of one"
        ) from None
