"""The model's configuration and its presets: the released shapes and tiny CPU variants.

The preprocessor is part of the model's config (as `class_path`/`init_args`) because training and
inference must use the same one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from h2ovl.errors import SettingError
from h2ovl.model.vision import VisionConfig


@dataclass
class H2OVLConfig:
    vision: VisionConfig
    llm: dict[str, Any]
    """A transformers config as a dict, with `model_type` (llama, mistral, ...)."""
    downsample_ratio: float | None = 0.5
    """Pixel shuffle ratio; None switches pixel shuffle off (projector input = encoder width)."""
    template: str = "h2ogpt2"
    preprocessor: dict[str, Any] = field(
        default_factory=lambda: {"class_path": "h2ovl.preprocessing.DynamicResolution"}
    )
    llm_weights: str | None = None
    """Local directory of pretrained LLM weights (transformers layout); None = random init."""
    tokenizer: str | None = None
    """Local tokenizer directory; None = the offline tiny tokenizer (tiny presets only)."""


def _intern_vit_300m() -> VisionConfig:
    return VisionConfig(model_name="vit_intern300m_patch14_448", img_size=448)


def _danube3_500m() -> dict[str, Any]:
    return dict(
        model_type="llama",
        hidden_size=1536,
        intermediate_size=4096,
        num_hidden_layers=16,
        num_attention_heads=16,
        num_key_value_heads=8,
        rope_theta=100000.0,
        vocab_size=32010,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


def _danube2_1_8b() -> dict[str, Any]:
    return dict(
        model_type="mistral",
        hidden_size=2560,
        intermediate_size=6912,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=8,
        rope_theta=10000.0,
        vocab_size=32010,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


def _tiny_vision(conv_stem: list[int] | None = None) -> VisionConfig:
    # 64 px tiles, patch 8: an 8x8 patch grid -> 16 tokens per tile with pixel shuffle.
    return VisionConfig(
        model_name="vit_intern300m_patch14_448",
        img_size=64,
        timm_kwargs=dict(patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0),
        conv_stem=conv_stem,
    )


def _tiny_llm(model_type: str) -> dict[str, Any]:
    # initializer_range: transformers' default 0.02 suits widths in the thousands; at width 64 it leaves
    # attention and the head nearly silent, and a from-scratch model learns to ignore the image (measured:
    # single clean digits still unread after 800 steps at 0.02, read from ~250 steps at 0.04-0.06).
    extra = {"sliding_window": None} if model_type == "mistral" else {}
    return dict(
        model_type=model_type,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=10000.0,
        vocab_size=522,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        initializer_range=0.06,
        **extra,
    )


def _preprocessor(name: str, tile_size: int) -> dict[str, Any]:
    init = {"tile_size": tile_size, "max_tiles": 6, "use_thumbnail": True}
    return {"class_path": f"h2ovl.preprocessing.{name}", "init_args": init}


PRESETS: dict[str, H2OVLConfig] = {
    "h2ovl-0.8b": H2OVLConfig(
        _intern_vit_300m(), _danube3_500m(), preprocessor=_preprocessor("DynamicResolution", 448)
    ),
    "h2ovl-2b": H2OVLConfig(_intern_vit_300m(), _danube2_1_8b(), preprocessor=_preprocessor("MSAC", 448)),
    "tiny": H2OVLConfig(_tiny_vision(), _tiny_llm("llama"), preprocessor=_preprocessor("DynamicResolution", 64)),
    "tiny-mistral": H2OVLConfig(_tiny_vision(), _tiny_llm("mistral"), preprocessor=_preprocessor("MSAC", 64)),
    # The tiny shapes with a convolutional stem: learns to read digits from scratch on a CPU in minutes,
    # where the plain tiny ViT is still guessing (the CPU demo). It has no released-layout equivalent.
    "tiny-reader": H2OVLConfig(
        _tiny_vision(conv_stem=[32, 32, 64]),
        _tiny_llm("llama"),
        preprocessor={"class_path": "h2ovl.preprocessing.FixedResize", "init_args": {"tile_size": 64}},
    ),
}


def preset(name: str) -> H2OVLConfig:
    """A fresh copy of a named preset (so callers may edit it)."""
    if name not in PRESETS:
        raise SettingError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
