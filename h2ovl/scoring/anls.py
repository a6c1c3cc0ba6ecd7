"""ANLS, the DocVQA / InfoVQA score: one minus the normalised Levenshtein distance to the closest
answer, zeroed below a threshold (0.5), as the DocVQA reference scorer computes it.

The distance is exact (rapidfuzz; torchmetrics' `edit_distance` searches a band around the diagonal and
overestimates long strings). The denominator is the longer *raw* string's length, as the DocVQA scorer
and older VLMEvalKit releases divide (current VLMEvalKit divides by the normalised lengths instead, which
differs only for answers with surrounding or repeated whitespace). So an empty prediction scores 0 except
against an answer that is empty after normalisation (all spaces), which it matches exactly.
"""

from __future__ import annotations

import torch
from rapidfuzz.distance import Levenshtein

from h2ovl.scoring.base import AnswerMetric


def _normalise(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls(prediction: str, answers: list[str], threshold: float = 0.5) -> float:
    """Best over answers of 1 - distance / length, where the distance is between the lower-cased, stripped,
    whitespace-collapsed strings but the length is the longer *raw* string's (the reference's choice)."""
    predicted = _normalise(prediction)
    best = 0.0
    for answer in answers:
        distance = Levenshtein.distance(predicted, _normalise(answer))
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
