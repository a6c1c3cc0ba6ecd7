"""Relaxed accuracy, the ChartQA score (Masry et al. 2022, after Methani et al. 2020): a numeric answer
is correct within 5% of the reference, any other answer only when it equals the reference ignoring case.

The reading is the one ChartQA's users report with (Pix2Struct's `relaxed_correctness`, copied by
Qwen-VL, lmms-eval and VLMEvalKit): both strings go through Python's `float` (so " 12 ", "1e3", "nan" and
"1_000" are numbers), a trailing "%" divides by 100, a reference that reads as 0 falls back to the string
comparison, and a sample scores 1 when any of its references accepts it. ChartQA is reported per split
(human-written and augmented questions) and over both; a sample's category names its split.
"""

from __future__ import annotations

import torch

from h2ovl.scoring.base import AnswerMetric

#: ChartQA's test splits, as `category` values; a category naming neither is refused.
SPLITS = ("human", "augmented")


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correct(prediction: str, target: str, max_relative_change: float = 0.05) -> bool:
    """Within `max_relative_change` of a numeric, non-zero `target`; else equal ignoring case."""
    predicted, expected = _to_float(prediction), _to_float(target)
    if predicted is not None and expected:
        return abs(predicted - expected) / abs(expected) <= max_relative_change
    return prediction.lower() == target.lower()


def split_of(category: str | None) -> str | None:
    """The ChartQA split a category names (lmms-eval writes "human_test", ChartQA's files "test_human")."""
    if category is None:
        return None
    matches = [split for split in SPLITS if split in category.lower()]
    if len(matches) != 1:
        raise ValueError(f"ChartQA split {category!r} names neither or both of {list(SPLITS)}")
    return matches[0]


class RelaxedAccuracy(AnswerMetric):
    """`accuracy` over every sample, and per split `<split>` with its count `<split>_n`, plus
    `mean_of_splits` (the two splits averaged, as InternVL and Qwen-VL report ChartQA) when both were seen."""

    higher_is_better = True

    def __init__(self, max_relative_change: float = 0.05, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_relative_change = max_relative_change
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("split_correct", default=torch.zeros(len(SPLITS), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("split_n", default=torch.zeros(len(SPLITS), dtype=torch.long), dist_reduce_fx="sum")

    def score_batch(self, preds: list[str], answers: list[list[str]], categories: list[str | None]) -> None:
        for pred, refs, category in zip(preds, answers, categories):
            hit = int(any(relaxed_correct(pred, ref, self.max_relative_change) for ref in refs))
            self.correct += hit
            split = split_of(category)
            if split is not None:
                index = SPLITS.index(split)
                self.split_n[index] += 1
                self.split_correct[index] += hit

    def scores(self) -> dict[str, float]:
        scores = {"accuracy": float(self.correct) / int(self.n)}
        seen = []
        for split, correct, n in zip(SPLITS, self.split_correct.tolist(), self.split_n.tolist()):
            if n:
                scores[split], scores[f"{split}_n"] = correct / n, float(n)
                seen.append(scores[split])
        if len(seen) == len(SPLITS):
            scores["mean_of_splits"] = sum(seen) / len(seen)
        return scores
