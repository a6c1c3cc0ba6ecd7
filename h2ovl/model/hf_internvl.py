"""transformers' own InternVL (`InternVLForConditionalGeneration`) <-> the released InternVL-chat layout.

Two directions:
- `save_hf_internvl_as_released`: a model in transformers' format becomes a released-layout directory,
  which `H2OVL.from_released` loads (the tests and benchmarks use it as an independent implementation);
- `export_hf_internvl`: a model trained here becomes a transformers-native directory (config,
  safetensors, tokenizer, image processor, processor with the h2ogpt2 chat template) that vanilla
  transformers, and serving engines that support its InternVL, load without remote code.

Both go through the released names (ours -> released is `released.ours_to_released`), so one mapping per
boundary. What the native format cannot carry: MSAC (transformers' image processor tiles as dynamic
resolution does; MSAC tiles must be made with h2ovl's preprocessor and passed as `pixel_values`), a
thumbnail switched off, and a conv stem (refused, as in the released layout).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from h2ovl.constants import ANSWER, END, IMG_CONTEXT, IMG_END, IMG_START, PROMPT
from h2ovl.errors import SettingError

if TYPE_CHECKING:
    from h2ovl.model.h2ovl import H2OVL

log = logging.getLogger(__name__)

_VISION, _LLM = "model.vision_tower.", "model.language_model."
# (transformers, released) per ViT block, for weight and bias alike (q, k, v: fused in the released layout),
# for single tensors, and the projector's layers.
_BLOCK = [
    ("attention.projection_layer", "attn.proj"),
    ("layernorm_before", "norm1"),
    ("layernorm_after", "norm2"),
    ("mlp.fc1", "mlp.fc1"),
    ("mlp.fc2", "mlp.fc2"),
]
_SINGLE = [
    ("embeddings.cls_token", "vision_model.embeddings.class_embedding"),
    ("embeddings.position_embeddings", "vision_model.embeddings.position_embedding"),
]
_PROJECTOR = [("layer_norm", "0"), ("linear_1", "1"), ("linear_2", "3")]
#: The h2ogpt2 template as a chat template: images become `<IMG_CONTEXT>`, which the processor expands.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}" + PROMPT + "{% else %}" + ANSWER + "{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}"
    + IMG_CONTEXT
    + "\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}" + END + "{% endfor %}"
    "{% if add_generation_prompt %}" + ANSWER + "{% endif %}"
)


def _renames(layers: list[int]) -> list[tuple[str, str]]:
    """(transformers, released) names of every tensor but the fused qkv and the language model's body."""
    pairs = [(_VISION + hf, released) for hf, released in _SINGLE]
    for w in ("weight", "bias"):
        pairs.append(
            (_VISION + f"embeddings.patch_embeddings.projection.{w}", f"vision_model.embeddings.patch_embedding.{w}")
        )
        pairs += [(f"model.multi_modal_projector.{hf}.{w}", f"mlp1.{index}.{w}") for hf, index in _PROJECTOR]
        for i in layers:
            pairs += [
                (f"{_VISION}encoder.layer.{i}.{hf}.{w}", f"vision_model.encoder.layers.{i}.{released}.{w}")
                for hf, released in _BLOCK
            ]
    for i in layers:
        pairs += [(f"{_VISION}encoder.layer.{i}.lambda_{n}", f"vision_model.encoder.layers.{i}.ls{n}") for n in (1, 2)]
    return pairs + [("lm_head.weight", "language_model.lm_head.weight")]


def hf_internvl_state_to_released(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    layers = sorted({int(k.split(".")[4]) for k in state if k.startswith(_VISION + "encoder.layer.")})
    out = {released: state[hf] for hf, released in _renames(layers)}
    for i in layers:  # the released InternViT fuses q, k, v into one projection
        for w in ("weight", "bias"):
            src = f"{_VISION}encoder.layer.{i}.attention."
            out[f"vision_model.encoder.layers.{i}.attn.qkv.{w}"] = torch.cat(
                [state[f"{src}{n}_proj.{w}"] for n in "qkv"]
            )
    out.update({"language_model.model." + k[len(_LLM) :]: v for k, v in state.items() if k.startswith(_LLM)})
    return out


def released_state_to_hf_internvl(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `hf_internvl_state_to_released`."""
    layers = sorted({int(k.split(".")[3]) for k in state if k.startswith("vision_model.encoder.layers.")})
    out = {hf: state[released] for hf, released in _renames(layers)}
    for i in layers:
        for w in ("weight", "bias"):
            for name, part in zip("qkv", state[f"vision_model.encoder.layers.{i}.attn.qkv.{w}"].chunk(3)):
                out[f"{_VISION}encoder.layer.{i}.attention.{name}_proj.{w}"] = part
    out.update(
        {_LLM + k[len("language_model.model.") :]: v for k, v in state.items() if k.startswith("language_model.model.")}
    )
    return out


def save_hf_internvl_as_released(hf: Any, path: Path) -> None:
    """Write a transformers InternVL model as a released-layout directory (config.json + weights)."""
    config = hf.config
    vision, text = config.vision_config, config.text_config
    if getattr(vision, "use_qk_norm", False) or getattr(vision, "norm_type", "layer_norm") != "layer_norm":
        raise SettingError("only LayerNorm InternViT without qk norm maps to the released H2OVL layout")
    image_size = vision.image_size[0] if isinstance(vision.image_size, (list, tuple)) else vision.image_size
    patch_size = vision.patch_size[0] if isinstance(vision.patch_size, (list, tuple)) else vision.patch_size
    path.mkdir(parents=True, exist_ok=True)
    state = hf_internvl_state_to_released(hf.state_dict())
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    llm_config = text.to_dict()
    released = {
        "downsample_ratio": config.downsample_ratio,
        "ps_version": "v2",
        "select_layer": config.vision_feature_layer,
        "template": "h2ogpt2",
        "force_image_size": image_size,
        "dynamic_image_size": True,
        "min_dynamic_patch": 1,
        "max_dynamic_patch": 6,
        "use_thumbnail": True,
        "use_msac": False,
        "vision_config": {
            "hidden_size": vision.hidden_size,
            "num_hidden_layers": vision.num_hidden_layers,
            "num_attention_heads": vision.num_attention_heads,
            "intermediate_size": vision.intermediate_size,
            "image_size": image_size,
            "patch_size": patch_size,
            "qkv_bias": vision.attention_bias,
            "layer_norm_eps": vision.layer_norm_eps,
            "norm_type": "layer_norm",
        },
        "llm_config": llm_config,
    }
    (path / "config.json").write_text(json.dumps(released, indent=2))


def hf_internvl_config(model: H2OVL) -> Any:
    """transformers' `InternVLConfig` for our model."""
    from transformers import AutoConfig, InternVLConfig, InternVLVisionConfig

    from h2ovl.model.released import config_to_released

    released = config_to_released(model)
    vision = released["vision_config"]
    llm = dict(released["llm_config"])
    text = AutoConfig.for_model(llm.pop("model_type"), **{k: v for k, v in llm.items() if k != "architectures"})
    return InternVLConfig(
        vision_config=InternVLVisionConfig(
            hidden_size=vision["hidden_size"],
            num_hidden_layers=vision["num_hidden_layers"],
            num_attention_heads=vision["num_attention_heads"],
            intermediate_size=vision["intermediate_size"],
            image_size=[vision["image_size"]] * 2,
            patch_size=[vision["patch_size"]] * 2,
            attention_bias=vision["qkv_bias"],
            layer_norm_eps=vision["layer_norm_eps"],
            norm_type="layer_norm",
            use_qk_norm=False,
            hidden_act="gelu",
        ),
        text_config=text,
        image_token_id=model.image_token_id,
        downsample_ratio=model.config.downsample_ratio or 1.0,
        vision_feature_layer=released["select_layer"],
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )


def export_hf_internvl(model: H2OVL, path: str | Path, tokenizer: Any) -> Path:
    """Write `model` as a transformers-native InternVL directory, loadable with
    `InternVLForConditionalGeneration.from_pretrained(path)` and `AutoProcessor.from_pretrained(path)`."""
    from transformers import (
        AutoTokenizer,
        GotOcr2ImageProcessor,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    from h2ovl.model.released import ours_to_released

    path = Path(path)
    if model.vision.has_conv_stem:
        raise SettingError(f"{path}: transformers' InternVL has no place for a conv stem (vision.conv_stem)")
    if model.config.downsample_ratio is None:
        raise SettingError(
            f"{path}: transformers' InternVL always pixel-shuffles; a model without it cannot be exported"
        )
    released = {ours_to_released(k): v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    with torch.device("meta"):  # the weights come from `state`: nothing is allocated twice
        hf = InternVLForConditionalGeneration(hf_internvl_config(model))
    hf.load_state_dict(released_state_to_hf_internvl(released), strict=True, assign=True)
    hf.generation_config = model.generation_config()  # stop at <|end|>, not only at </s>
    hf.save_pretrained(str(path))

    kind = model.config.preprocessor["class_path"].rsplit(".", 1)[-1]
    init = model.config.preprocessor.get("init_args", {})
    if kind == "MSAC" or not init.get("use_thumbnail", True):
        log.warning(
            "%s: transformers' image processor tiles by dynamic resolution with a thumbnail; this model "
            "was configured with %s: make its tiles with h2ovl's preprocessor and pass them as pixel_values",
            path,
            model.config.preprocessor,
        )
    mean, std = model.vision.mean_std
    tile = model.vision.tile_size
    image_processor = GotOcr2ImageProcessor(
        size={"height": tile, "width": tile},
        crop_to_patches=kind != "FixedResize",
        min_patches=init.get("min_tiles", 1),
        max_patches=init.get("max_tiles", 1),
        image_mean=list(mean),
        image_std=list(std),
    )
    # The processor finds the image tokens through these tokenizer attributes. H2OVL has no video token, and
    # a new one would grow the vocabulary past the embeddings, so the processor's (unused) video slot is
    # `</img>`: a prompt given to the processor never holds it (the processor itself writes it around the
    # image tokens it expands), so it never counts as a video.
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        # `model_specific_special_tokens`: read as these attributes from transformers 5.0 on (5.0 ignores
        # the newer `extra_special_tokens` mapping here), and saved with the tokenizer.
        marked = AutoTokenizer.from_pretrained(
            scratch,
            model_specific_special_tokens={
                "start_image_token": IMG_START,
                "end_image_token": IMG_END,
                "context_image_token": IMG_CONTEXT,
                "video_token": IMG_END,
            },
        )
    # The processor class needs a video processor; H2OVL never saw video, so it is only its image settings.
    video_processor = InternVLVideoProcessor(
        size={"height": tile, "width": tile}, image_mean=list(mean), image_std=list(std)
    )
    processor = InternVLProcessor(
        image_processor=image_processor,
        tokenizer=marked,
        video_processor=video_processor,
        image_seq_length=model.tokens_per_tile,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(str(path))
    return path
