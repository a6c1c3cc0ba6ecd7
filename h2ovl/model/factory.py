"""`build_model`: the model, its tokenizer and its preprocessor from a config's model keys: a preset (random
weights, or pretrained parts named by file, folder or hub id) or a released checkpoint. The training module
only assembles what this returns with a stage's settings (freezing, checkpointing, `model.init.checkpoint`, validation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from h2ovl.errors import SettingError
from h2ovl.model.h2ovl import H2OVL, Attention
from h2ovl.model.parts import resolve_folder
from h2ovl.model.tokenizer import load_tokenizer
from h2ovl.preprocessing import ImagePreprocessor


@dataclass(frozen=True)
class BuiltModel:
    model: H2OVL
    tokenizer: Any
    preprocessor: ImagePreprocessor
    """The model's own, its tile size the vision tower's."""


def build_model(
    preset: str = "tiny",
    *,
    vision_weights: str | None = None,
    llm: str | None = None,
    tokenizer: str | None = None,
    preprocessor: dict[str, Any] | None = None,
    pixel_shuffle: bool = True,
    released: str | None = None,
    attention: Attention = "sdpa",
) -> BuiltModel:
    """A preset with its parts and overrides, or (`released`) a released checkpoint whose directory fixes
    everything but the attention kernel. The keys are `H2OVLModule`'s (documented there)."""
    overrides: dict[str, Any] = {}
    if preprocessor is not None:
        overrides["preprocessor"] = preprocessor
    if not pixel_shuffle:
        overrides["downsample_ratio"] = None
    if released:
        if overrides or vision_weights or llm or tokenizer:
            raise SettingError(
                "with model.init.released, the model's parts, preprocessor and pixel shuffle come from its directory: "
                "leave model.init.vision_weights, llm and tokenizer, model.preprocessor and model.pixel_shuffle unset"
            )
        folder = resolve_folder("model.init.released", released)  # a hub id: its snapshot in the cache
        model = H2OVL.from_released(folder, attention=attention)
        loaded_tokenizer = load_tokenizer(folder, add_missing=False)
    else:
        model, loaded_tokenizer = H2OVL.from_preset(
            preset,
            vision_weights=vision_weights,
            attention=attention,
            llm_weights=llm,
            tokenizer=tokenizer,
            **overrides,
        )
    built = model.build_preprocessor()
    if built.tile_size != model.vision.tile_size:  # else step 1 fails on a token count
        raise SettingError(
            f"model.preprocessor makes {built.tile_size}-px tiles but the {preset!r} ViT takes "
            f"{model.vision.tile_size}-px tiles: leave model.preprocessor.init_args.tile_size unset (the ViT's "
            "is used) or set it to that"
        )
    return BuiltModel(model, loaded_tokenizer, built)
