"""Transcription: character and word error rates and exact match against the first answer.

CER = character edits / reference characters, WER = word edits / reference words (words split on
whitespace), both summed over the corpus as torchmetrics and jiwer define them. The edit counts are exact
Levenshtein distances (rapidfuzz) kept as int64 states, so a CER above 1 carries no float32 rounding.
"""

from __future__ import annotations

import torch
from rapidfuzz.distance import Levenshtein

from h2ovl.scoring.base import AnswerMetric


class TranscriptionScore(AnswerMetric):
    """`cer`, `wer` (lower is better) and `exact_match` (stripped strings equal)."""

    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("char_edits", "chars", "word_edits", "words", "exact"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def score_batch(self, preds: list[str], answers: list[list[str]], categories: list[str | None]) -> None:
        for pred, target in zip(preds, (refs[0] for refs in answers)):
            self.char_edits += Levenshtein.distance(pred, target)
            self.chars += len(target)
            self.word_edits += Levenshtein.distance(pred.split(), target.split())
            self.words += len(target.split())
            self.exact += int(pred.strip() == target.strip())

    def scores(self) -> dict[str, float]:
        n = int(self.n)
        return {
            "cer": _rate(self.char_edits, self.chars),
            "wer": _rate(self.word_edits, self.words),
            "exact_match": float(self.exact) / n,
        }


def _rate(edits: torch.Tensor, total: torch.Tensor) -> float:
    """edits / total. With only empty references: 0.0 when nothing was predicted either, else inf (as
    torchmetrics reports it)."""
    if int(total) == 0:
        return 0.0 if int(edits) == 0 else float("inf")
    return int(edits) / int(total)
