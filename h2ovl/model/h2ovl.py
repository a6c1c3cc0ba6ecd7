"""H2OVL: ViT -> pixel shuffle -> MLP projector -> causal LLM, as a plain PyTorch module.

The model owns tile normalisation (uint8 tiles in), splices projected visual tokens into the LLM's
input embeddings at the `<IMG_CONTEXT>` positions (a count mismatch is an error), computes the loss on
supervised tokens only, and generates with the LLM's KV cache. Lightning wraps it elsewhere.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from h2ovl.constants import IGNORE_INDEX
from h2ovl.errors import CheckpointError, SettingError
from h2ovl.model.config import H2OVLConfig, preset
from h2ovl.model.parts import resolve_folder, resolve_part
from h2ovl.model.pixel_shuffle import pixel_shuffle, shuffle_factor
from h2ovl.model.projector import build_projector
from h2ovl.model.released import config_to_released, read_released, released_state_to_ours, write_released
from h2ovl.model.tokenizer import END, IMG_CONTEXT, build_tiny_tokenizer, load_tokenizer
from h2ovl.model.vision import VisionEncoder
from h2ovl.preprocessing import TileNormalizer, tokens_per_tile

log = logging.getLogger(__name__)

PARTS = ("vision", "projector", "llm")


def build_llm(config: dict[str, Any], weights: str | None = None) -> PreTrainedModel:
    """A causal LM from a config dict (random init) or pretrained weights: a transformers directory or a
    hub id (resolved through transformers' cache; `HF_HUB_OFFLINE=1` is respected).

    `attn_implementation` in the dict picks the attention kernel (`Attention`); every one keeps the samples
    of a packed row apart."""
    fields = dict(config)
    attention = fields.pop("attn_implementation", "sdpa")
    if weights:
        # fp32 master weights whatever the checkpoint's dtype: precision is the trainer's business.
        return resolve_part(
            "model.init.llm",
            weights,
            lambda: AutoModelForCausalLM.from_pretrained(weights, attn_implementation=attention, dtype=torch.float32),
        )
    llm_config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    return AutoModelForCausalLM.from_config(llm_config, attn_implementation=attention)


#: The LLM's attention kernels (transformers' names). Packed rows: "sdpa" and "eager" build a dense
#: block-diagonal mask (memory quadratic in the row's length); "flex_attention" a block-sparse one that is
#: never materialised (forward only on CPU: torch has no CPU backward for it); "flash_attention_2" its
#: varlen path (GPU, where the package is installed).
Attention = Literal["sdpa", "eager", "flex_attention", "flash_attention_2"]


class H2OVL(nn.Module):
    def __init__(self, config: H2OVLConfig, image_token_id: int, end_token_ids: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.config = config
        self.image_token_id = image_token_id
        self.end_token_ids = end_token_ids
        self.vision = VisionEncoder(config.vision)
        mean, std = self.vision.mean_std
        self.normalizer = TileNormalizer(mean, std)
        ratio = config.downsample_ratio
        in_width = self.vision.width * (shuffle_factor(ratio) ** 2 if ratio is not None else 1)
        self.llm = build_llm(config.llm, config.llm_weights)
        self.projector = build_projector(in_width, self.llm.config.hidden_size)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_preset(
        cls, name: str, vision_weights: str | None = None, attention: Attention = "sdpa", **overrides: Any
    ) -> tuple[H2OVL, Any]:
        """(model, tokenizer) for a named preset; `overrides` replace top-level config fields
        (`llm_weights`, `tokenizer`, `downsample_ratio`, ...), `vision_weights` the ViT's weights,
        `attention` the LLM's attention kernel."""
        config = preset(name)
        config.llm = {**config.llm, "attn_implementation": attention}
        for key, value in overrides.items():
            setattr(config, key, value)
        if vision_weights:
            config.vision.weights = vision_weights
        if config.tokenizer:
            tokenizer = load_tokenizer(config.tokenizer)
        elif name.startswith("tiny"):
            tokenizer = build_tiny_tokenizer()
        else:
            raise SettingError(
                f"preset {name!r} needs a real tokenizer: set model.init.tokenizer to a tokenizer directory or hub id "
                "(the offline tiny tokenizer is for the tiny presets only)"
            )
        if not config.llm_weights:
            config.llm["vocab_size"] = max(config.llm.get("vocab_size", 0), len(tokenizer))
        return cls.for_tokenizer(config, tokenizer), tokenizer

    @classmethod
    def for_tokenizer(cls, config: H2OVLConfig, tokenizer: Any) -> H2OVL:
        """The model for `tokenizer`. Embeddings grow only by the H2OVL tokens that `load_tokenizer` added
        to a base tokenizer (logged); any other difference between tokenizer and embeddings is an error."""
        vocab = tokenizer.get_vocab()
        ends = tuple(vocab[t] for t in (END, tokenizer.eos_token) if t in vocab)
        model = cls(config, image_token_id=vocab[IMG_CONTEXT], end_token_ids=ends)
        rows, size = model.llm.get_input_embeddings().num_embeddings, len(tokenizer)
        added = getattr(tokenizer, "h2ovl_added_tokens", 0)
        if size > rows:
            if config.llm_weights and rows != size - added:
                raise SettingError(
                    f"tokenizer {config.tokenizer or '(tiny)'} has {size - added} tokens (+{added} H2OVL tokens) but the "
                    f"LLM {config.llm_weights} has {rows} embedding rows: they do not belong together"
                )
            if config.llm_weights:
                log.info("LLM %s: %d embedding rows added for the H2OVL tokens", config.llm_weights, size - rows)
            model.llm.resize_token_embeddings(size)
        return model

    @classmethod
    def from_released(cls, path: str | Path, image_token_id: int | None = None, attention: Attention = "sdpa") -> H2OVL:
        """A released-layout directory (config.json, safetensors, tokenizer files used as shipped) or its hub
        id (`h2oai/h2ovl-mississippi-2b`, through the Hugging Face cache), loaded strictly; without tokenizer
        files, `image_token_id` must be given. `attention`: the LLM's attention kernel."""
        path = resolve_folder("released", str(path))
        config, weights, has_tokenizer = read_released(path)
        config.llm = {**config.llm, "attn_implementation": attention}
        if has_tokenizer and image_token_id is None:
            config.tokenizer = str(path)
            model = cls.for_tokenizer(config, load_tokenizer(path, add_missing=False))
        elif image_token_id is not None:
            model = cls(config, image_token_id=image_token_id)
        else:
            raise CheckpointError(f"{path}: no tokenizer files and no image_token_id given: cannot find {IMG_CONTEXT}")
        model.load_state_dict(released_state_to_ours(weights, model.state_dict(), path), strict=True)
        return model

    def save_released(self, path: str | Path, tokenizer: Any = None) -> None:
        """This model in the released InternVL-chat layout (plus the tokenizer's files when given)."""
        path = Path(path)
        if self.vision.has_conv_stem:
            raise SettingError(f"{path}: the released InternVL layout has no place for a conv stem (vision.conv_stem)")
        write_released(path, config_to_released(self), self.state_dict())
        self.generation_config().save_pretrained(str(path))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(path))

    def generation_config(self) -> GenerationConfig:
        """Greedy decoding that stops where this model stops (`<|end|>`, and `</s>`): what an export carries,
        so a plain `generate()` or a serving engine does not run past the answer."""
        ends = list(self.end_token_ids)
        return GenerationConfig(eos_token_id=ends or None, pad_token_id=ends[0] if ends else None, do_sample=False)

    # -- facts the data side needs -----------------------------------------------------------------
    @property
    def tokens_per_tile(self) -> int:
        return tokens_per_tile(self.vision.tile_size, self.vision.patch_size, self.config.downsample_ratio)

    def build_preprocessor(self):
        """The preprocessor this model was configured (and trained) with."""
        from h2ovl.preprocessing import instantiate_preprocessor

        return instantiate_preprocessor(self.config.preprocessor).for_tile_size(self.vision.tile_size)

    # -- forward -----------------------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Tiles [n, 3, T, T] (uint8 or normalised float) -> visual tokens [n * tokens_per_tile, hidden]."""
        dtype = next(self.vision.parameters()).dtype
        features = self.vision(self.normalizer(pixel_values, dtype=dtype))
        if self.config.downsample_ratio is not None:
            features = pixel_shuffle(features, self.config.downsample_ratio)
        return self.projector(features.to(self.projector[0].weight.dtype)).flatten(0, 1)

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with the `<IMG_CONTEXT>` positions replaced by visual tokens, in tile order.

        A batch without images still runs one blank tile through the vision encoder and projector,
        contributing exactly zero, whenever ranks must agree on the graph (training, or any run under
        torch.distributed): DDP expects a gradient for every trainable parameter and FSDP every rank's
        all-gathers, and the paper's mixtures have text-only samples."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        slots = input_ids == self.image_token_id
        if pixel_values is None or pixel_values.shape[0] == 0:
            self._check_image_slots(slots, 0, 0)
            if self.training or torch.distributed.is_initialized():
                size = self.vision.tile_size
                blank = torch.zeros(1, 3, size, size, dtype=torch.uint8, device=input_ids.device)
                embeds = embeds + 0 * self.encode_images(blank).sum().to(embeds.dtype)
            return embeds
        visual = self.encode_images(pixel_values)
        self._check_image_slots(slots, visual.shape[0], pixel_values.shape[0])
        return embeds.masked_scatter(slots.unsqueeze(-1), visual.to(embeds.dtype))

    def _check_image_slots(self, slots: torch.Tensor, visual_tokens: int, tiles: int) -> None:
        """The `<IMG_CONTEXT>` positions must be as many as the visual tokens. In training the check runs on
        the device (`torch._assert_async`), since reading the count would stall the step on a host sync
        (the data side builds every sample with matching counts; this guards the model's own contract);
        elsewhere the count is read, to name both numbers."""
        if self.training:
            torch._assert_async(
                slots.sum() == visual_tokens,
                f"input_ids' {IMG_CONTEXT} tokens are not the {visual_tokens} visual tokens of the {tiles} tiles",
            )
            return
        n_slots = int(slots.sum())
        if n_slots == visual_tokens:
            return
        if tiles == 0:
            raise ValueError(f"input_ids hold {n_slots} {IMG_CONTEXT} tokens but no pixel_values were given")
        raise ValueError(
            f"input_ids hold {n_slots} {IMG_CONTEXT} tokens but the {tiles} tiles give "
            f"{visual_tokens} visual tokens ({self.tokens_per_tile} per tile)"
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **llm_kwargs: Any,
    ) -> CausalLMOutputWithPast:
        if labels is not None and not bool((labels[:, 1:] != IGNORE_INDEX).any()):
            raise ValueError("labels supervise no token: refusing to train on a zero loss")
        embeds = self.embed(input_ids, pixel_values)
        # No KV cache in a full forward: besides wasting memory, a cache object makes transformers skip
        # the packed-sequence mask it derives from restarting position_ids.
        llm_kwargs.setdefault("use_cache", False)
        return self.llm(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, labels=labels, **llm_kwargs
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """New token ids [batch, <= max_new_tokens], KV-cached; prompts must be left-padded.
        Stops at `<|end|>` (or `</s>`); finished rows are padded with the first end token."""
        embeds = self.embed(input_ids, pixel_values)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            eos_token_id=list(self.end_token_ids) or None,
            pad_token_id=self.end_token_ids[0] if self.end_token_ids else None,
            **generate_kwargs,
        )

    # -- training switches -------------------------------------------------------------------------
    def set_trainable(
        self, vision: bool = False, projector: bool = True, llm: bool = False, vision_last_blocks: int = 0
    ) -> None:
        """Freeze per part; `vision_last_blocks` > 0 unfreezes only that many final ViT blocks."""
        for part, flag in (("vision", vision), ("projector", projector), ("llm", llm)):
            getattr(self, part).requires_grad_(flag)
        if not vision and vision_last_blocks > 0:
            blocks = self.vision.blocks
            if vision_last_blocks > len(blocks):
                raise SettingError(f"vision_last_blocks={vision_last_blocks} but the encoder has {len(blocks)} blocks")
            for block in list(blocks)[-vision_last_blocks:]:
                block.requires_grad_(True)

    def shard_units(self) -> list[nn.Module]:
        """The repeated layers worth one FSDP unit each: ViT blocks and LLM decoder layers."""
        return [*self.vision.blocks, *self.llm.get_decoder().layers]

    def parameter_report(self) -> dict[str, dict[str, int]]:
        """Trainable and frozen parameter counts per part."""
        report = {}
        for part in PARTS:
            params = list(getattr(self, part).parameters())
            trainable = sum(p.numel() for p in params if p.requires_grad)
            report[part] = {"trainable": trainable, "frozen": sum(p.numel() for p in params) - trainable}
        report["total"] = {k: sum(report[p][k] for p in PARTS) for k in ("trainable", "frozen")}
        return report

    def set_gradient_checkpointing(self, vision: bool = False, llm: bool = False) -> None:
        self.vision.set_grad_checkpointing(vision)
        # transformers >= 5 renamed gradient_checkpointing_* to activation_checkpointing_*.
        prefix = "activation" if hasattr(self.llm, "activation_checkpointing_enable") else "gradient"
        if llm:
            getattr(self.llm, f"{prefix}_checkpointing_enable")(
                **{f"{prefix}_checkpointing_kwargs": {"use_reentrant": False}}
            )
        else:
            getattr(self.llm, f"{prefix}_checkpointing_disable")()
