"""Transcription: character and word error rates (torchmetrics) and exact match against the first answer."""

from __future__ import annotations

import torch
from torchmetrics.text import CharErrorRate, WordErrorRate

from h2ovl.evaluation.base import AnswerMetric


class TranscriptionScore(AnswerMetric):
    """`cer`, `wer` (lower is better) and `exact_match` (stripped strings equal). The CER/WER states live in
    torchmetrics' own metrics, which sync themselves when computed."""

    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cer = CharErrorRate(**kwargs)
        self.wer = WordErrorRate(**kwargs)
        self.add_state("exact", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def score_batch(self, preds: list[str], answers: list[list[str]], categories: list[str | None]) -> None:
        targets = [refs[0] for refs in answers]
        self.cer.update(preds, targets)
        self.wer.update(preds, targets)
        self.exact += sum(p.strip() == t.strip() for p, t in zip(preds, targets))

    def scores(self) -> dict[str, float]:
        n = int(self.n)
        return {"cer": float(self.cer.compute()), "wer": float(self.wer.compute()), "exact_match": float(self.exact) / n}

    def reset(self) -> None:
        super().reset()
        self.cer.reset()
        self.wer.reset()
