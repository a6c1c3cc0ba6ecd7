"""The released InternVL-chat checkpoint layout, as pure conversion: (config.json, safetensors) <->
(H2OVLConfig, state dict). Building the model and loading it is `H2OVL.from_released`'s job.

A directory with config.json (`vision_config`, `llm_config`, pixel-shuffle and tiling fields),
safetensors weights (one file or shards with an index) and optional tokenizer files. Loading is strict:
every tensor is used, every shape checked, and the error lists what does not fit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from h2ovl.errors import CheckpointError, SettingError
from h2ovl.model.config import H2OVLConfig
from h2ovl.model.vision import VisionConfig, internvit_to_timm, timm_to_internvit

_PREFIXES = [("vision_model.", "vision.vit."), ("mlp1.", "projector."), ("language_model.", "llm.")]


def released_to_ours(key: str) -> str:
    for released, ours in _PREFIXES:
        if key.startswith(released):
            rest = key[len(released) :]
            if ours == "vision.vit.":
                rest = internvit_to_timm(rest)
            return ours + rest
    raise KeyError(f"tensor {key!r} belongs to no part of the released layout (vision_model., mlp1., language_model.)")


def ours_to_released(key: str) -> str:
    for released, ours in _PREFIXES:
        if key.startswith(ours):
            rest = key[len(ours) :]
            if released == "vision_model.":
                rest = timm_to_internvit(rest)
            return released + rest
    raise KeyError(f"parameter {key!r} has no place in the released layout")


# -- config ----------------------------------------------------------------------------------------
def config_from_released(raw: dict[str, Any], path: Path) -> H2OVLConfig:
    def need(key: str) -> Any:
        if key not in raw:
            raise CheckpointError(f"{path / 'config.json'}: missing key {key!r}")
        return raw[key]

    vision_raw, llm_raw = need("vision_config"), dict(need("llm_config"))
    if raw.get("ps_version", "v2") != "v2":
        raise CheckpointError(f"{path / 'config.json'}: ps_version {raw['ps_version']!r} is not supported (only 'v2')")
    if vision_raw.get("norm_type", "layer_norm") != "layer_norm" or vision_raw.get("qk_normalization", False):
        raise CheckpointError(f"{path / 'config.json'}: only LayerNorm InternViT without qk_normalization is supported")
    hidden = vision_raw["hidden_size"]
    vision = VisionConfig(
        model_name="vit_intern300m_patch14_448",
        img_size=int(raw.get("force_image_size") or vision_raw["image_size"]),
        select_layer=int(raw.get("select_layer", -1)),
        timm_kwargs=dict(
            patch_size=vision_raw["patch_size"],
            embed_dim=hidden,
            depth=vision_raw["num_hidden_layers"],
            num_heads=vision_raw["num_attention_heads"],
            mlp_ratio=vision_raw["intermediate_size"] / hidden,
            qkv_bias=vision_raw.get("qkv_bias", True),
        ),
    )
    if "model_type" not in llm_raw:
        raise CheckpointError(f"{path / 'config.json'}: llm_config has no model_type")
    for key in ("architectures", "_name_or_path", "transformers_version", "auto_map", "torch_dtype", "dtype"):
        llm_raw.pop(key, None)
    tiling = {
        "tile_size": vision.img_size,
        "max_tiles": int(raw.get("max_dynamic_patch", 6)),
        "use_thumbnail": bool(raw.get("use_thumbnail", True)),
    }
    if raw.get("use_msac", False):
        preprocessor = {"class_path": "h2ovl.preprocessing.MSAC", "init_args": tiling}
    elif raw.get("dynamic_image_size", True):
        tiling["min_tiles"] = int(raw.get("min_dynamic_patch", 1))
        preprocessor = {"class_path": "h2ovl.preprocessing.DynamicResolution", "init_args": tiling}
    else:
        preprocessor = {"class_path": "h2ovl.preprocessing.FixedResize", "init_args": {"tile_size": vision.img_size}}
    return H2OVLConfig(
        vision=vision,
        llm=llm_raw,
        downsample_ratio=raw.get("downsample_ratio", 0.5),
        template=raw.get("template", "h2ogpt2"),
        preprocessor=preprocessor,
    )


def config_to_released(model: Any) -> dict[str, Any]:
    """config.json for a model (read through its public attributes: config, vision, llm)."""
    config, vision = model.config, model.vision
    init = config.preprocessor.get("init_args", {})
    kind = config.preprocessor["class_path"].rsplit(".", 1)[-1]
    if kind == "MixedViews":  # a shared stage's mix: the released config.json names one way to tile
        raise SettingError(
            "this model was trained with MixedViews (each image through one of several preprocessors); the released "
            "layout names one preprocessor: fine-tune it with one (model.preprocessor) and export that checkpoint"
        )
    llm_config = model.llm.config.to_dict()
    llm_config["architectures"] = [type(model.llm).__name__]
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    llm_config["torch_dtype"] = dtype
    # vLLM's built-in H2OVL (model_type h2ovl_chat) reads these fields, the vision ones through its
    # InternViT (`initializer_factor`, `qk_normalization`, `norm_type`, ...), as the released configs have them.
    return {
        "architectures": ["H2OVLChatModel"],
        "model_type": "h2ovl_chat",
        "torch_dtype": dtype,
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "downsample_ratio": config.downsample_ratio,
        "ps_version": "v2",
        "select_layer": vision.config.select_layer,
        "template": config.template,
        "force_image_size": vision.tile_size,
        "dynamic_image_size": kind != "FixedResize",
        "min_dynamic_patch": init.get("min_tiles", 1),
        "max_dynamic_patch": init.get("max_tiles", 1 if kind == "FixedResize" else 6),
        "use_thumbnail": init.get("use_thumbnail", True),
        "use_msac": kind == "MSAC",
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": vision.width,
            "num_hidden_layers": vision.num_blocks,
            "num_attention_heads": vision.vit.blocks[0].attn.num_heads,
            "intermediate_size": vision.vit.blocks[0].mlp.fc1.out_features,
            "image_size": vision.tile_size,
            "patch_size": vision.patch_size,
            "qkv_bias": vision.vit.blocks[0].attn.qkv.bias is not None,
            "layer_norm_eps": vision.vit.blocks[0].norm1.eps,
            "norm_type": "layer_norm",
            "hidden_act": "gelu",
            "qk_normalization": False,
            "num_channels": 3,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
            "drop_path_rate": 0.0,
            "attention_dropout": 0.0,
            "dropout": 0.0,
            "use_flash_attn": False,
        },
        "llm_config": llm_config,
    }


# -- weights ---------------------------------------------------------------------------------------
def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors weights found")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        for key, tensor in load_file(str(file)).items():
            if key in state:
                raise CheckpointError(f"{file}: tensor {key!r} appears in more than one weights file")
            state[key] = tensor
    return state


def read_released(path: Path) -> tuple[H2OVLConfig, dict[str, torch.Tensor], bool]:
    """(the model config, the weights under their released names, whether tokenizer files are there)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: not a released checkpoint (no config.json)")
    config = config_from_released(json.loads(config_file.read_text()), path)
    # The releases ship a SentencePiece tokenizer.model with tokenizer_config.json and no tokenizer.json.
    has_tokenizer = any(
        (path / name).is_file() for name in ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")
    )
    return config, _read_weights(path), has_tokenizer


def released_state_to_ours(
    released: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """The released weights under our names, checked against the state dict of the model they are for:
    every tensor used, every shape equal; the error lists what does not fit."""
    mapped, problems = {}, []
    for key, tensor in released.items():
        try:
            target = released_to_ours(key)
        except KeyError as err:
            problems.append(str(err))
            continue
        if target not in expected:
            problems.append(f"unexpected tensor {key!r} (-> {target!r})")
        elif expected[target].shape != tensor.shape:
            problems.append(
                f"shape of {key!r}: checkpoint {tuple(tensor.shape)} vs model {tuple(expected[target].shape)}"
            )
        else:
            mapped[target] = tensor
    problems += [f"missing tensor {ours_to_released(k)!r}" for k in expected if k not in mapped]
    if problems:
        listed = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise CheckpointError(f"{path}: the weights do not fit the model built from config.json:\n  {listed}")
    return mapped


def write_released(path: Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """config.json and model.safetensors (our state dict, renamed) under `path`; the weights file is
    written aside and renamed, so a half file never has the real name."""
    path.mkdir(parents=True, exist_ok=True)
    # clone: tied LLM weights share storage, which safetensors refuses; the released layout is untied.
    released = {ours_to_released(k): v.detach().cpu().clone().contiguous() for k, v in state.items()}
    tmp = path / "model.safetensors.tmp"
    save_file(released, str(tmp), metadata={"format": "pt"})
    tmp.replace(path / "model.safetensors")
    (path / "config.json").write_text(json.dumps(config, indent=2))
