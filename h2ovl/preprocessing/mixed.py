"""MixedViews: each image shown through one of several preprocessors, for a shared training stage.

An ablation that fine-tunes one variant per preprocessor from a shared checkpoint should start them all
from a model that has seen every variant's view equally, so that the shared stage favours none of them.
This preprocessor is that stage's: each image is tiled by one of `choices`, picked by a hash of the image
(its encoded bytes), so an image always gets the same view: in every data-loader worker, after a resume,
at every validation and wherever its file lies, which keeps the stage reproducible and its validation
curve comparable from one validation to the next.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from h2ovl.errors import SettingError
from h2ovl.preprocessing.base import ImagePreprocessor, TiledImage, TilingPlan
from h2ovl.preprocessing.image_io import ImageSource


def source_key(source: ImageSource) -> bytes:
    """What identifies an image for the choice: its file's bytes, else its encoded or raw pixel bytes."""
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).read_bytes()
        except OSError:  # the preprocessor's own loading reports a missing or unreadable file, naming it
            return os.fsencode(source)
    if isinstance(source, bytes):
        return source
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    return buffer.getvalue()


class MixedViews(ImagePreprocessor):
    """Args: choices: the preprocessors to mix (the model's tile size, unless their configs all set one);
    seed: changes which image gets which view. The tile budget (`max_tiles`) is the largest of the choices'."""

    def __init__(self, choices: Sequence[ImagePreprocessor], seed: int = 0) -> None:
        if not choices:
            raise SettingError("MixedViews needs at least one preprocessor in choices")
        sizes = sorted({choice.tile_size for choice in choices})
        if len(sizes) > 1:
            raise SettingError(f"MixedViews: every choice must make tiles of one size, got tile sizes {sizes}")
        set_sizes = {choice.tile_size_set for choice in choices}
        # Loading limits and the fast path are each choice's own: the chosen one does all the work.
        super().__init__(tile_size=sizes[0] if set_sizes == {True} else None)
        self.choices = list(choices)
        self.seed = seed

    def for_tile_size(self, tile_size: int) -> MixedViews:
        return MixedViews([choice.for_tile_size(tile_size) for choice in self.choices], seed=self.seed)

    @property
    def max_tiles(self) -> int:
        return max(choice.max_tiles for choice in self.choices)

    def choose(self, source: ImageSource) -> ImagePreprocessor:
        """The preprocessor that shows this image (the same one every time)."""
        digest = hashlib.blake2b(source_key(source), digest_size=8, key=str(self.seed).encode()).digest()
        return self.choices[int.from_bytes(digest, "big") % len(self.choices)]

    def plan(self, width: int, height: int, max_tiles: int | None = None) -> TilingPlan:
        # Without the image there is nothing to choose by: the first choice's plan (what a preview of
        # the configuration shows). Tiling an image goes through `__call__`, which chooses.
        return self.choices[0].plan(width, height, max_tiles=max_tiles)

    def __call__(
        self, source: ImageSource, n_images: int = 1, max_tiles: int | None = None, split_budget: bool = True
    ) -> TiledImage:
        return self.choose(source)(source, n_images=n_images, max_tiles=max_tiles, split_budget=split_budget)

    def config(self) -> dict[str, Any]:
        return {
            "class_path": "h2ovl.preprocessing.MixedViews",
            "init_args": {"choices": [choice.config() for choice in self.choices], "seed": self.seed},
        }
