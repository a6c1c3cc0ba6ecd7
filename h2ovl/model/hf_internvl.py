"""transformers' own InternVL (`InternVLForConditionalGeneration`) -> the released InternVL-chat layout.

Lets a checkpoint in transformers' format be loaded with `H2OVL.from_released`, and gives the tests
and benchmarks an independent implementation to compare against (the mapping here goes from
transformers' names to the released ones; ours from the released ones to timm's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


def hf_internvl_state_to_released(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    vision = "model.vision_tower."
    layers = {int(k.split(".")[4]) for k in state if k.startswith(vision + "encoder.layer.")}
    for i in sorted(layers):
        src, dst = f"{vision}encoder.layer.{i}.", f"vision_model.encoder.layers.{i}."
        for w in ("weight", "bias"):
            # the released InternViT fuses q, k, v into one projection
            out[dst + f"attn.qkv.{w}"] = torch.cat([state[src + f"attention.{n}_proj.{w}"] for n in "qkv"])
            out[dst + f"attn.proj.{w}"] = state[src + f"attention.projection_layer.{w}"]
            out[dst + f"norm1.{w}"] = state[src + f"layernorm_before.{w}"]
            out[dst + f"norm2.{w}"] = state[src + f"layernorm_after.{w}"]
            out[dst + f"mlp.fc1.{w}"] = state[src + f"mlp.fc1.{w}"]
            out[dst + f"mlp.fc2.{w}"] = state[src + f"mlp.fc2.{w}"]
        out[dst + "ls1"], out[dst + "ls2"] = state[src + "lambda_1"], state[src + "lambda_2"]
    out["vision_model.embeddings.class_embedding"] = state[vision + "embeddings.cls_token"]
    out["vision_model.embeddings.position_embedding"] = state[vision + "embeddings.position_embeddings"]
    for w in ("weight", "bias"):
        out[f"vision_model.embeddings.patch_embedding.{w}"] = state[vision + f"embeddings.patch_embeddings.projection.{w}"]
        out[f"mlp1.0.{w}"] = state[f"model.multi_modal_projector.layer_norm.{w}"]
        out[f"mlp1.1.{w}"] = state[f"model.multi_modal_projector.linear_1.{w}"]
        out[f"mlp1.3.{w}"] = state[f"model.multi_modal_projector.linear_2.{w}"]
    for key, tensor in state.items():
        if key.startswith("model.language_model."):
            out["language_model.model." + key[len("model.language_model.") :]] = tensor
    out["language_model.lm_head.weight"] = state["lm_head.weight"]
    return out


def save_hf_internvl_as_released(hf: Any, path: Path) -> None:
    """Write a transformers InternVL model as a released-layout directory (config.json + weights)."""
    config = hf.config
    vision, text = config.vision_config, config.text_config
    if getattr(vision, "use_qk_norm", False) or getattr(vision, "norm_type", "layer_norm") != "layer_norm":
        raise ValueError("only LayerNorm InternViT without qk norm maps to the released H2OVL layout")
    image_size = vision.image_size[0] if isinstance(vision.image_size, (list, tuple)) else vision.image_size
    patch_size = vision.patch_size[0] if isinstance(vision.patch_size, (list, tuple)) else vision.patch_size
    path.mkdir(parents=True, exist_ok=True)
    state = hf_internvl_state_to_released(hf.state_dict())
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    llm_config = text.to_dict()
    released = {
        "downsample_ratio": config.downsample_ratio, "ps_version": "v2", "select_layer": config.vision_feature_layer,
        "template": "h2ogpt2", "force_image_size": image_size, "dynamic_image_size": True,
        "min_dynamic_patch": 1, "max_dynamic_patch": 6, "use_thumbnail": True, "use_msac": False,
        "vision_config": {
            "hidden_size": vision.hidden_size, "num_hidden_layers": vision.num_hidden_layers,
            "num_attention_heads": vision.num_attention_heads, "intermediate_size": vision.intermediate_size,
            "image_size": image_size, "patch_size": patch_size, "qkv_bias": vision.attention_bias,
            "layer_norm_eps": vision.layer_norm_eps, "norm_type": "layer_norm",
        },
        "llm_config": llm_config,
    }
    (path / "config.json").write_text(json.dumps(released, indent=2))
