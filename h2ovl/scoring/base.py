"""The shared shape of the answer scorers: torchmetrics `Metric`s whose state is sums (so DDP's
all-reduce is exact) and whose `update` takes predictions, each prediction's reference answers, and
(for OCRBench) its category."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


class AnswerMetric(Metric):
    """Every scorer counts its samples in `n`; `compute()` returns `n` and the named scores (none when n is 0)."""

    full_state_update = False
    higher_is_better: bool | None = None

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("n", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, preds: Sequence[str], answers: Sequence[Sequence[str]], categories: Sequence[str | None] | None = None
    ) -> None:
        if len(preds) != len(answers):
            raise ValueError(f"{len(preds)} predictions but {len(answers)} answer lists")
        for i, (pred, refs) in enumerate(zip(preds, answers)):
            if not isinstance(pred, str):
                raise TypeError(f"prediction {i} is {type(pred).__name__}, not a string")
            if not refs or not all(isinstance(a, str) and a.strip() for a in refs):
                raise ValueError(f"sample {i} has an empty answer list or a blank answer: {refs!r}")
        self.score_batch(
            list(preds), [list(a) for a in answers], list(categories) if categories is not None else [None] * len(preds)
        )
        self.n += len(preds)

    def score_batch(self, preds: list[str], answers: list[list[str]], categories: list[str | None]) -> None:
        raise NotImplementedError

    def scores(self) -> dict[str, float]:
        """The named scores, from states that are already summed over ranks."""
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        n = int(self.n)
        return {"n": float(n), **(self.scores() if n else {})}
