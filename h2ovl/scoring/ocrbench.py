"""OCRBench (Liu et al. 2024): 1000 questions in ten categories, each scoring 1 when any reference answer
is a substring of the prediction, as the benchmark's own scorer (and VLMEvalKit's) decides it."""

from __future__ import annotations

import torch

from h2ovl.scoring.base import AnswerMetric

HANDWRITTEN_MATHS = "Handwritten Mathematical Expression Recognition"
TEXT_RECOGNITION = (
    "Regular Text Recognition",
    "Irregular Text Recognition",
    "Artistic Text Recognition",
    "Handwriting Recognition",
    "Digit String Recognition",
    "Non-Semantic Text Recognition",
)
#: OCRBench's categories (its `type` field), in its own order; the five reported groups follow.
CATEGORIES = (
    *TEXT_RECOGNITION,
    "Scene Text-centric VQA",
    "Doc-oriented VQA",
    "Key Information Extraction",
    HANDWRITTEN_MATHS,
)
GROUPS = {
    "text_recognition": TEXT_RECOGNITION,
    "scene_text_vqa": ("Scene Text-centric VQA",),
    "doc_vqa": ("Doc-oriented VQA",),
    "kie": ("Key Information Extraction",),
    "handwritten_maths": (HANDWRITTEN_MATHS,),
}


def _plain(text: str) -> str:
    return text.lower().strip().replace("\n", " ")


def _maths(text: str) -> str:
    # Handwritten maths keeps case and drops every space, so LaTeX spacing does not matter.
    return text.strip().replace("\n", " ").replace(" ", "")


def ocrbench_hit(prediction: str, answers: list[str], category: str) -> bool:
    """1 if any answer, normalised, is a substring of the normalised prediction."""
    normalise = _maths if category == HANDWRITTEN_MATHS else _plain
    predicted = normalise(prediction)
    return any(normalise(answer) in predicted for answer in answers)


def category_key(category: str) -> str:
    return category.lower().replace("-", "_").replace(" ", "_")


class OCRBenchScore(AnswerMetric):
    """Per-category and per-group counts of correct answers, `final_score` (their total, out of 1000 on
    the full benchmark) and `final_score_per_1000` (the total scaled to 1000 questions, for subsets)."""

    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.zeros(len(CATEGORIES), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("asked", default=torch.zeros(len(CATEGORIES), dtype=torch.long), dist_reduce_fx="sum")

    def score_batch(self, preds: list[str], answers: list[list[str]], categories: list[str | None]) -> None:
        for pred, refs, category in zip(preds, answers, categories):
            if category not in CATEGORIES:
                raise ValueError(f"OCRBench category {category!r} is not one of {list(CATEGORIES)}")
            index = CATEGORIES.index(category)
            self.asked[index] += 1
            self.correct[index] += int(ocrbench_hit(pred, refs, category))

    def scores(self) -> dict[str, float]:
        correct = dict(zip(CATEGORIES, self.correct.tolist()))
        scores = {category_key(c): float(v) for c, v in correct.items()}
        scores.update({group: float(sum(correct[c] for c in members)) for group, members in GROUPS.items()})
        total = float(self.correct.sum())
        asked = int(self.asked.sum())
        scores["final_score"] = total
        scores["final_score_per_1000"] = 1000.0 * total / asked
        return scores
