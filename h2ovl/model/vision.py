"""The vision encoder: any timm ViT, exposing what the rest of the model needs (tile size, patch size,
width, blocks) so that callers never poke inside timm's module."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from h2ovl.errors import SettingError
from h2ovl.model.parts import PretrainedPartError, resolve_folder, resolve_part


@dataclass
class VisionConfig:
    """A timm ViT by name plus architecture overrides; `weights` is a state dict file, an InternViT release
    (folder or hub id) or a timm pretrained tag of `model_name` (see `load_timm_weights`)."""

    model_name: str = "vit_intern300m_patch14_448"
    img_size: int = 448
    select_layer: int = -1
    """Which block's output feeds the projector; negative counts from the end (-1 = last)."""
    drop_path_rate: float = 0.0
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    conv_stem: list[int] | None = None
    """Channels of stride-2 3x3 convolutions that replace the patch projection (their strides multiply
    to the patch size, so the token grid is unchanged). None = the ViT's own patch projection, as released.
    A ViT trained from scratch on little data learns to see far sooner with one (Xiao et al., 2021,
    "Early convolutions help transformers see better"): the tiny reading presets use it."""


class VisionEncoder(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        # num_classes=0 and global_pool="" drop the classifier head; nothing is downloaded. With pretrained
        # weights named, the ViT is built on the meta device and takes the loaded tensors as its own: one
        # copy of its weights in host memory, never a random one beside it.
        with torch.device("meta") if config.weights else contextlib.nullcontext():
            self.vit = timm.create_model(
                config.model_name,
                pretrained=False,
                num_classes=0,
                global_pool="",
                img_size=config.img_size,
                drop_path_rate=config.drop_path_rate,
                **{**config.timm_kwargs, **_conv_stem_kwargs(config)},
            )
        if not 0 < self.num_blocks + (config.select_layer if config.select_layer < 0 else 0) <= self.num_blocks:
            raise SettingError(f"select_layer {config.select_layer} is outside the encoder's {self.num_blocks} blocks")
        if config.weights:
            load_timm_weights(self.vit, config.weights, config.model_name)

    @property
    def tile_size(self) -> int:
        return self.config.img_size

    @property
    def patch_size(self) -> int:
        """Pixels per token side (a conv stem's total stride)."""
        return self.tile_size // self.vit.patch_embed.grid_size[0]

    @property
    def has_conv_stem(self) -> bool:
        return self.config.conv_stem is not None

    @property
    def width(self) -> int:
        return self.vit.embed_dim

    @property
    def num_blocks(self) -> int:
        return len(self.vit.blocks)

    @property
    def num_patches(self) -> int:
        return (self.tile_size // self.patch_size) ** 2

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        cfg = self.vit.pretrained_cfg
        return tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))

    @property
    def blocks(self) -> nn.ModuleList | nn.Sequential:
        return self.vit.blocks

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.vit.set_grad_checkpointing(enabled)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised tiles [n, 3, T, T] -> patch tokens [n, num_patches, width] (prefix tokens dropped)."""
        layer = self.config.select_layer % self.num_blocks
        (features,) = self.vit.forward_intermediates(
            pixel_values, indices=[layer], norm=False, output_fmt="NLC", intermediates_only=True, stop_early=True
        )
        return features


def _conv_stem_kwargs(config: VisionConfig) -> dict[str, Any]:
    """timm's hybrid-ViT embedding (`HybridEmbed` over a `ConvStem`) in place of the patch projection."""
    if config.conv_stem is None:
        return {}
    patch = config.timm_kwargs.get("patch_size")
    if not config.conv_stem or patch is None or 2 ** len(config.conv_stem) != patch:
        raise SettingError(
            f"vision conv_stem {config.conv_stem}: needs timm_kwargs.patch_size and log2(patch_size) stride-2 "
            f"convolutions (patch_size={patch})"
        )
    from timm.layers import GroupNorm1, HybridEmbed
    from timm.models.vision_transformer_hybrid import ConvStem

    # GroupNorm, not BatchNorm: no statistics shared across samples, so training, evaluation and any
    # number of tiles or devices see the same normalisation.
    stem = ConvStem(
        depth=len(config.conv_stem),
        channels=tuple(config.conv_stem),
        stride=(2,) * len(config.conv_stem),
        kernel_size=3,
        norm_layer=GroupNorm1,
        act_layer=nn.GELU,
    )
    return {"embed_layer": partial(HybridEmbed, backbone=stem), "patch_size": 1}


#: endings that make `VisionConfig.weights` a file; anything else is a folder, a hub id or a timm tag
WEIGHT_FILE_ENDINGS = (".safetensors", ".pth", ".pt", ".bin")

# InternViT's own tensor names (OpenGVLab's releases; `vision_model.` inside an InternVL-chat checkpoint)
# -> timm's; order matters. The inverse maps back for the released layout.
_INTERNVIT_TO_TIMM = [
    (r"^embeddings\.class_embedding$", "cls_token"),
    (r"^embeddings\.position_embedding$", "pos_embed"),
    (r"^embeddings\.patch_embedding\.", "patch_embed.proj."),
    (r"^encoder\.layers\.(\d+)\.ls([12])$", r"blocks.\1.ls\2.gamma"),
    (r"^encoder\.layers\.(\d+)\.", r"blocks.\1."),
]
_TIMM_TO_INTERNVIT = [
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.ls([12])\.gamma$", r"encoder.layers.\1.ls\2"),
    (r"^blocks\.(\d+)\.", r"encoder.layers.\1."),
]


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return key


def internvit_to_timm(key: str) -> str:
    return _rename(key, _INTERNVIT_TO_TIMM)


def timm_to_internvit(key: str) -> str:
    return _rename(key, _TIMM_TO_INTERNVIT)


def _internvit_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm names for a state dict in InternViT's names (a bare InternViT release, or an InternVL-chat
    checkpoint's `vision_model.` part); a timm state dict is returned as it is."""
    if not any(k.startswith(("embeddings.", "encoder.layers.", "vision_model.")) for k in state):
        return state
    prefixed = any(k.startswith("vision_model.") for k in state)
    return {
        internvit_to_timm(k.removeprefix("vision_model.")): v
        for k, v in state.items()
        if not prefixed or k.startswith("vision_model.")
    }


def _read_weight_files(files: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(
            load_file(str(file))
            if file.suffix == ".safetensors"
            else torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        )
    return state


def load_timm_weights(vit: nn.Module, weights: str, model_name: str) -> None:
    """Strictly load pretrained weights into the timm model: a local safetensors or torch state dict (timm
    or InternViT names), a folder or hub id of an InternViT release (`OpenGVLab/InternViT-300M-448px`:
    config.json and safetensors in InternViT's names), or a timm pretrained tag of `model_name` (e.g.
    `ogvl_dist`: timm fetches it through its hub cache)."""
    if weights.endswith(WEIGHT_FILE_ENDINGS):
        state = _internvit_state(_read_weight_files([Path(weights)]))
    elif "/" in weights or Path(weights).expanduser().is_dir():
        folder = resolve_folder("model.init.vision_weights", weights)
        files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
        if not files:
            raise PretrainedPartError(
                f"model.init.vision_weights {weights!r}: {folder} holds no *.safetensors or pytorch_model*.bin weights"
            )
        state = _internvit_state(_read_weight_files(files))
    else:
        pretrained = resolve_part(
            "model.init.vision_weights",
            weights,
            lambda: timm.create_model(f"{model_name}.{weights}", pretrained=True, num_classes=0, global_pool=""),
        )
        state = pretrained.state_dict()
    # fp32 master weights whatever the file's dtype (precision is the trainer's business); `assign` makes
    # them the module's own tensors (the module may sit on the meta device), with its requires_grad.
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = vit.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise PretrainedPartError(
            f"{weights}: weights do not fit the vision encoder: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    left = [name for name, tensor in (*vit.named_parameters(), *vit.named_buffers()) if tensor.is_meta]
    if left:  # non-persistent buffers of an architecture that derives them: not in any weights file
        raise PretrainedPartError(f"{weights}: the vision encoder's {left[:8]} are in no weights file")
