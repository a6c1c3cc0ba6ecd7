"""The training loss, reduced over the supervised tokens of a whole optimizer step, as InternVL offers it.

Every supervised token t of sample s carries a weight w_t = n_s^-p, where n_s is the number of tokens
sample s supervises: p = 0 for `token` (every token counts the same), 1 for `sample` (every sample
counts the same), 0.5 for `square`. The step's loss is sum(w_t * CE_t) / sum(w_t), both sums over the
*global* batch: every accumulated micro-batch on every rank. A micro-batch cannot know the global sum
in advance, so it back-propagates its weighted sum alone, and `GlobalLossNormalizer` divides the
gradients by the global weight once accumulation is complete, just before the optimizer step (and
before clipping). The result does not depend on how the global batch is split into micro-batches or
ranks, nor on how many tokens each sample supervises (which per-micro-batch means get wrong).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from h2ovl.errors import SettingError

#: reduction -> the power p of the per-sample weight n_s^-p
REDUCTIONS = {"token": 0.0, "sample": 1.0, "square": 0.5}
#: the type configs name a reduction with (the CLI refuses other values before anything is built)
LossReduction = Literal["token", "sample", "square"]


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise SettingError(f"model.optim.loss_reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}")


def weighted_loss(logits: torch.Tensor, batch: dict, reduction: str = "token") -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of w_t * CE_t, sum of w_t) over one micro-batch's supervised tokens.

    The batch says where they are (`supervision`, computed while collating): position p's logits predict
    the token after it, and only those positions reach the (full-vocabulary, fp32) cross entropy. No host
    sync: every shape here is known from the batch."""
    positions, owners = batch["loss_positions"], batch["loss_owners"]
    if positions.numel() == 0:
        raise ValueError("labels supervise no token: refusing to train on a zero loss")
    ce = F.cross_entropy(
        logits.flatten(0, 1).index_select(0, positions).float(), batch["loss_targets"], reduction="none"
    )
    power = REDUCTIONS[reduction]
    if power == 0.0:
        weights = torch.ones_like(ce)
    else:  # n_s per sample by scatter into a vector of the batch's sample count (a bincount would sync)
        counts = torch.zeros(len(batch["ids"]), dtype=ce.dtype, device=ce.device).index_add_(
            0, owners, torch.ones_like(ce)
        )
        weights = counts[owners].pow(-power)
    return (weights * ce).sum(), weights.sum()


class GlobalLossNormalizer:
    """Sums the weights of one optimizer step's micro-batches, then turns the accumulated gradients of
    weighted sums into the gradient of the global weighted mean."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros(())
        self.weight_sum = torch.zeros(())

    def add(self, loss_sum: torch.Tensor, weight_sum: torch.Tensor) -> None:
        self.loss_sum = self.loss_sum.to(loss_sum.device) + loss_sum.detach().float()
        self.weight_sum = self.weight_sum.to(weight_sum.device) + weight_sum.detach().float()

    @staticmethod
    def backward_scale(world_size: int, accumulate: int) -> float:
        """What a micro-batch's weighted sum is multiplied by before backward: it undoes the mean over
        ranks (DDP, FSDP) and over accumulated micro-batches (Lightning), which the global division
        replaces."""
        return float(world_size * accumulate)

    def finish_step(self, parameters: list[torch.nn.Parameter], reduce_sum) -> torch.Tensor:
        """Divide every gradient by the step's global weight; returns the step's loss (global weighted
        mean). `reduce_sum` sums a tensor over ranks (identity on one process)."""
        totals = reduce_sum(torch.stack([self.loss_sum, self.weight_sum]))
        loss, weight = totals[0] / totals[1], float(totals[1])
        for parameter in parameters:
            if parameter.grad is not None:
                parameter.grad.mul_(1.0 / weight)
        self.reset()
        return loss
