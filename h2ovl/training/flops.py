"""Model FLOPs of one training batch, for MFU.

Written by hand because batches differ in shape (tiles per sample, packed lengths), so one
`measure_flops` trace cannot stand for every step; `tests/test_flops.py` checks this count against
`lightning.fabric.utilities.measure_flops` on real batches.

Convention (PaLM's model FLOPs, independent of the kernels that run): a matmul over `n` parameters
costs 2n per token forward, 2n more for weight gradients where the part trains, and 2n for activation
gradients wherever gradients flow (the part or anything before it trains). Attention costs
4 * layers * width * seq^2 per sequence forward (QK^T and AV) and twice that backward, over the full
(padded or packed) row. Work a kernel adds on top is not model FLOPs and not counted: the score
recomputation of fused (flash / memory-efficient) attention backward, which PyTorch's FLOP counter
books as 2.5x forward, and recomputation under gradient checkpointing. So MFU is comparable across
attention kernels and GPUs. The test traces with the math attention path, whose matmuls are exactly
these; some torch releases count no FLOPs at all for the CPU's fused kernel.
"""

from __future__ import annotations

import torch
from lightning.fabric.utilities.throughput import get_available_flops

from h2ovl.model.h2ovl import H2OVL

#: Dense peak FLOP/s of the H200, which is the H100 SXM's die with more memory (NVIDIA's H100/H200
#: datasheets). Lightning's table knows it only under names `nvidia-smi` does not print ("NVIDIA H200"
#: is not found) and lists its with-sparsity tensor-core figures, which would halve MFU.
_H200_DENSE = {
    torch.bfloat16: 989.4e12,
    torch.float16: 989.4e12,
    "tfloat32": 494.7e12,
    torch.float32: 66.9e12,
    torch.int8: 1978.9e12,
}


def _matmul_params(module: torch.nn.Module, skip: tuple[torch.nn.Module, ...] = ()) -> int:
    """Parameters that enter matmuls: weights of >= 2 dims, minus lookups (embeddings)."""
    skipped = {id(p) for m in skip for p in m.parameters()}
    return sum(p.numel() for p in module.parameters() if p.dim() >= 2 and id(p) not in skipped)


def _trains(module: torch.nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def patch_embedding_flops(model: H2OVL, n_tiles: int) -> int:
    """The patch projection: a matmul per patch (the prefix tokens are not projected). Its input is
    pixels, so it never computes an activation gradient. Exact for the released ViT's projection; a
    convolutional stem (tiny reading presets) is counted as if it were one."""
    return n_tiles * 2 * model.vision.num_patches * _matmul_params(model.vision.vit.patch_embed)


def forward_flops(model: H2OVL, n_tiles: int, rows: int, seq_len: int) -> dict[str, tuple[int, int]]:
    """Forward FLOPs per part as (matmuls with weights, attention) for `n_tiles` tiles and `rows` token
    rows of `seq_len`."""
    vision, vit = model.vision, model.vision.vit
    blocks_run = model.vision.config.select_layer % vision.num_blocks + 1
    vit_tokens = vision.num_patches + getattr(vit, "num_prefix_tokens", 1)
    block_params = _matmul_params(vision.blocks[0])
    vision_flops = (
        n_tiles * 2 * vit_tokens * block_params * blocks_run + patch_embedding_flops(model, n_tiles),
        n_tiles * 4 * blocks_run * vision.width * vit_tokens**2,
    )
    visual_tokens = n_tiles * model.tokens_per_tile
    projector_flops = (2 * visual_tokens * _matmul_params(model.projector), 0)

    llm = model.llm
    config = llm.config
    embeddings = llm.get_input_embeddings()
    head = llm.get_output_embeddings()
    # A tied head shares the embedding matrix, but it is still one matmul per position.
    llm_params = _matmul_params(llm, skip=(embeddings,)) + (
        head.weight.numel() if head is not None and head.weight is embeddings.weight else 0
    )
    llm_flops = (rows * 2 * seq_len * llm_params, rows * 4 * config.num_hidden_layers * config.hidden_size * seq_len**2)
    return {"vision": vision_flops, "projector": projector_flops, "llm": llm_flops}


def training_flops(model: H2OVL, n_tiles: int, rows: int, seq_len: int) -> int:
    """Forward + backward model FLOPs of one micro-batch."""
    total, upstream_trains = 0, False
    for part, (matmul, attention) in forward_flops(model, n_tiles, rows, seq_len).items():
        trains = _trains(getattr(model, part))
        total += matmul + attention
        if trains:  # weight gradients
            total += matmul
        # Activation gradients: one matmul per weight matmul (but the pixels' own), two per attention
        # matmul (dQ, dK from the scores' gradient; dS, dV from the output's).
        if trains or upstream_trains:
            no_input_gradient = patch_embedding_flops(model, n_tiles) if part == "vision" else 0
            total += matmul - no_input_gradient + 2 * attention
        upstream_trains = upstream_trains or trains
    return total


def dense_peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """The device's dense peak FLOP/s for `dtype`, the denominator of MFU: Lightning's table, but for the
    H200 (see `_H200_DENSE`). None where the device is not known."""
    if device.type == "cuda" and "h200" in torch.cuda.get_device_name(device).lower():
        # fp32 matmuls run as TF32 unless the precision is "highest" (as Lightning reads it).
        tf32 = dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest"
        return _H200_DENSE.get("tfloat32" if tf32 else dtype)
    return get_available_flops(device, dtype)
