"""Image preprocessing: the ablation axis. Image -> uint8 tiles + the plan (grids, tile count).

Three swappable variants behind one interface (`ImagePreprocessor`), usable as LightningCLI
`class_path` values: `FixedResize`, `DynamicResolution`, `MSAC`;
`MixedViews` shows each image through one of several, for a training stage shared by their ablation.
"""

from h2ovl.preprocessing.base import ImagePreprocessor, TiledImage, TilingPlan, instantiate_preprocessor
from h2ovl.preprocessing.dynamic import DynamicResolution
from h2ovl.preprocessing.fixed import FixedResize
from h2ovl.preprocessing.grids import Grid, candidate_grids, closest_grid, tile_budget_per_image, tokens_per_tile
from h2ovl.preprocessing.image_io import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from h2ovl.preprocessing.mixed import MixedViews
from h2ovl.preprocessing.msac import MSAC
from h2ovl.preprocessing.normalize import IMAGENET_MEAN, IMAGENET_STD, TileNormalizer

__all__ = [
    "instantiate_preprocessor",
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MSAC",
    "MixedViews",
    "DynamicResolution",
    "FixedResize",
    "Grid",
    "ImageLoadError",
    "ImagePreprocessor",
    "TileNormalizer",
    "TiledImage",
    "TilingPlan",
    "candidate_grids",
    "closest_grid",
    "load_image",
    "tile_budget_per_image",
    "tokens_per_tile",
]
