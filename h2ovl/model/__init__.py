"""The H2OVL model as plain PyTorch modules: vision encoder (timm), pixel shuffle, projector, LLM
(transformers), presets, tokenizers and the released checkpoint layout."""

from h2ovl.model.config import PRESETS, H2OVLConfig, preset
from h2ovl.model.h2ovl import H2OVL, IGNORE_INDEX
from h2ovl.model.pixel_shuffle import pixel_shuffle
from h2ovl.model.vision import VisionConfig, VisionEncoder

__all__ = [
    "H2OVL",
    "IGNORE_INDEX",
    "PRESETS",
    "H2OVLConfig",
    "VisionConfig",
    "VisionEncoder",
    "pixel_shuffle",
    "preset",
]
