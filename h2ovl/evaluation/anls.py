"""ANLS, the DocVQA / InfoVQA score: one minus the normalised Levenshtein distance to the closest
answer, zeroed below a threshold (0.5), as the DocVQA reference scorer computes it."""

from __future__ import annotations

import torch
from torchmetrics.functional.text import edit_distance

from h2ovl.evaluation.base import AnswerMetric


def _normalise(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls(prediction: str, answers: list[str], threshold: float = 0.5) -> float:
    """Best over answers of 1 - distance / length, where the distance is between the lower-cased, stripped,
    whitespace-collapsed strings but the length is the longer *raw* string's (the reference's choice)."""
    distances = edit_distance([_normalise(prediction)] * len(answers), [_normalise(a) for a in answers], reduction="none")
    best = 0.0
    for answer, distance in zip(answers, distances.tolist()):
        length = max(len(answer.upper()), len(prediction.upper()))
        best = max(best, 1.0 - (distance / length if length else 0.0))
    return best if best >= threshold else 0.0


class ANLS(AnswerMetric):
    """Mean ANLS over samples (`anls`, in [0, 1])."""

    higher_is_better = True

    def __init__(self, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def score_batch(self, preds: list[str], answers: list[list[str]], categories: list[str | None]) -> None:
        self.total += sum(anls(p, a, self.threshold) for p, a in zip(preds, answers))

    def scores(self) -> dict[str, float]:
        return {"anls": float(self.total / self.n)}
