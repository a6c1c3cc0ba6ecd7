"""AdamW parameter groups (weight decay / no decay, per-part learning rates) and the warmup-cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from h2ovl.errors import SettingError
from h2ovl.model.h2ovl import PARTS


def parameter_groups(
    model: nn.Module, lr: float, weight_decay: float, part_lr: dict[str, float] | None = None
) -> list[dict]:
    """One group per (part, decay): biases, norms, gains and other 1-D tensors get no decay (the usual
    transformer recipe), nor do the ViT's position embedding and prefix tokens (timm's `no_weight_decay`);
    `part_lr` overrides the learning rate of "vision", "projector" or "llm". Decided by parameter names
    and full shapes, which FSDP2 keeps."""
    part_lr = dict(part_lr or {})
    unknown = set(part_lr) - set(PARTS)
    if unknown:
        raise SettingError(f"part_lr names unknown parts {sorted(unknown)}; parts are {list(PARTS)}")
    groups = []
    vit = model.vision.vit
    vit_no_decay = {f"vit.{name}" for name in (vit.no_weight_decay() if hasattr(vit, "no_weight_decay") else ())}
    for part in PARTS:
        decay, no_decay = [], []
        for name, param in getattr(model, part).named_parameters():
            if param.requires_grad:
                exempt = param.ndim < 2 or name.endswith(".bias") or (part == "vision" and name in vit_no_decay)
                (no_decay if exempt else decay).append(param)
        part_rate = part_lr.get(part, lr)
        for params, wd, kind in ((decay, weight_decay, "decay"), (no_decay, 0.0, "no_decay")):
            if params:
                groups.append({"params": params, "lr": part_rate, "weight_decay": wd, "name": f"{part}/{kind}"})
    if not groups:
        raise SettingError("no trainable parameter: the freeze spec freezes every part")
    return groups


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0):
    """Linear warmup to each group's lr, then cosine decay to `min_lr_ratio` of it at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
