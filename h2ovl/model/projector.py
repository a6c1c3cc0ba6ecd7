"""The MLP projector (ViT features -> LLM embeddings) and how its weights carry across a pixel-shuffle change.

Switching pixel shuffle on or off changes the projector's input width by p^2 (p x p patches per token),
so a checkpoint's projector does not fit as is. Re-initialising it makes the switched variant start
behind for a reason that has nothing to do with pixel shuffle; `fit_projector_input` instead rewrites
the first LayerNorm and Linear so the new projector computes exactly what the old one did whenever the
p x p patches of a token are equal. No library does this; the algebra is below.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

#: state-dict suffixes of the parts whose shape depends on the input width (LayerNorm 0, Linear 1).
NORM_WEIGHT, NORM_BIAS, LINEAR_WEIGHT, LINEAR_BIAS = "0.weight", "0.bias", "1.weight", "1.bias"


def build_projector(in_width: int, llm_width: int) -> nn.Sequential:
    """LayerNorm -> Linear -> GELU -> Linear; indices 0, 1, 3 match the released `mlp1` keys."""
    return nn.Sequential(
        nn.LayerNorm(in_width), nn.Linear(in_width, llm_width), nn.GELU(), nn.Linear(llm_width, llm_width)
    )


def fit_projector_input(state: dict[str, torch.Tensor], prefix: str, in_width: int) -> dict[str, torch.Tensor]:
    """`state`'s projector (keys under `prefix`) rewritten for input width `in_width`; other keys unchanged.

    A pixel-shuffled token is its p x p patches' features side by side (`pixel_shuffle`: blocks of d
    channels), and a LayerNorm over k equal blocks normalises each block as a LayerNorm over one would.
    Folding (shuffle on -> off, k*d -> d): Linear(LN_kd([x..x])) = sum_j W_j (g_j * n + b_j) + c, with
    n = LN_d(x) unscaled, so W' = sum_j W_j diag(g_j), c' = c + sum_j W_j b_j and an identity LayerNorm.
    Spreading (off -> on, d -> k*d): tile the LayerNorm's scale and shift k times and use W / k per block.
    Both are exact on tokens whose patches are equal and a starting point, not a copy, otherwise.
    """
    norm_weight = state[prefix + NORM_WEIGHT]
    width = norm_weight.numel()
    if width == in_width:
        return state
    blocks = max(width, in_width) // min(width, in_width)
    if blocks * min(width, in_width) != max(width, in_width) or round(blocks**0.5) ** 2 != blocks:
        raise ValueError(
            f"projector input width {width} cannot become {in_width}: not a pixel-shuffle change "
            f"(the widths must differ by a square factor p*p)"
        )
    log.info(
        "projector input width %d -> %d (pixel shuffle differs): its first layers rewritten to match", width, in_width
    )
    norm_bias, weight, bias = state[prefix + NORM_BIAS], state[prefix + LINEAR_WEIGHT], state[prefix + LINEAR_BIAS]
    if width > in_width:  # fold k blocks of d channels into one
        per_block = weight.reshape(weight.shape[0], blocks, in_width)
        new = {
            NORM_WEIGHT: torch.ones_like(norm_weight[:in_width]),
            NORM_BIAS: torch.zeros_like(norm_bias[:in_width]),
            LINEAR_WEIGHT: (per_block * norm_weight.reshape(blocks, in_width)).sum(dim=1),
            LINEAR_BIAS: bias + torch.einsum("hkd,kd->h", per_block, norm_bias.reshape(blocks, in_width)),
        }
    else:  # spread one block of d channels over k
        new = {
            NORM_WEIGHT: norm_weight.repeat(blocks),
            NORM_BIAS: norm_bias.repeat(blocks),
            LINEAR_WEIGHT: weight.repeat(1, blocks) / blocks,
            LINEAR_BIAS: bias.clone(),
        }
    return {**state, **{prefix + suffix: tensor.contiguous() for suffix, tensor in new.items()}}
