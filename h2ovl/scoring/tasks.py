"""The scoring tasks by name, and `TaskScorer`: routes each scored sample to its task's metric.

`h2ovl score`, `h2ovl evaluate` and generation-based validation all score through `TaskScorer`, so a
number means the same thing wherever it was computed. Metric names are `<task>/<metric>`
(`cer/cer`, `kie/score`, `ocrbench/final_score`, ...), as logged to MLflow.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from h2ovl.errors import SettingError, UserError
from h2ovl.scoring.anls import ANLS
from h2ovl.scoring.base import AnswerMetric
from h2ovl.scoring.kie import KIEScore
from h2ovl.scoring.ocrbench import OCRBenchScore
from h2ovl.scoring.relaxed import RelaxedAccuracy
from h2ovl.scoring.transcription import TranscriptionScore
from h2ovl.scoring.vqa import VQAAccuracy


class PredictionsError(UserError, ValueError):
    """A prediction or reference that cannot be scored; the message names the file and line."""


#: task name -> its metric. "cer" is transcription (CER, WER, exact match); "relaxed" is ChartQA's relaxed accuracy.
TASKS: dict[str, type[AnswerMetric]] = {
    "ocrbench": OCRBenchScore,
    "anls": ANLS,
    "vqa": VQAAccuracy,
    "kie": KIEScore,
    "cer": TranscriptionScore,
    "relaxed": RelaxedAccuracy,
}
#: "auto" scores each sample with the task named in its record's `scorer` field (the synthetic data's).
AUTO = "auto"


@dataclass(frozen=True)
class Scored:
    """One prediction and what it is scored against."""

    id: str
    prediction: str
    answers: tuple[str, ...]
    category: str | None = None
    scorer: str | None = None
    where: str = ""
    """The file and line (or sample id) it came from, for error messages."""


class TaskScorer(nn.Module):
    """One metric per task in use; `update` takes `Scored` samples, `compute` returns `<task>/<metric>`
    floats (plus `<task>/n`) for every task that saw a sample on any rank.

    Args:
        task: one of `TASKS`, or "auto" (each sample's own `scorer`).
        options: per task, its metric's keyword arguments (`{"vqa": {"processing": "vlmevalkit"}}`).
    """

    def __init__(self, task: str = AUTO, options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        if task != AUTO and task not in TASKS:
            raise SettingError(f"unknown task {task!r}: choose from {[AUTO, *TASKS]}")
        options = dict(options or {})
        if unknown := set(options) - set(TASKS):
            raise SettingError(f"scorer options for unknown task(s) {sorted(unknown)}: choose from {list(TASKS)}")
        self.task = task
        names = list(TASKS) if task == AUTO else [task]
        self.metrics = nn.ModuleDict({name: TASKS[name](**options.get(name, {})) for name in names})

    def task_of(self, sample: Scored) -> str:
        if self.task != AUTO:
            return self.task
        if sample.scorer not in TASKS:
            raise PredictionsError(
                f"{sample.where}: task 'auto' scores by the record's 'scorer' field, which is "
                f"{sample.scorer!r}; give one of {list(TASKS)} in the data or pass a task"
            )
        return sample.scorer

    def update(self, samples: Iterable[Scored]) -> None:
        for sample in samples:  # one by one, so an error names the sample at fault
            try:
                self.metrics[self.task_of(sample)].update(
                    [sample.prediction], [list(sample.answers)], [sample.category]
                )
            except (ValueError, TypeError) as error:
                raise PredictionsError(f"{sample.where}: {error}") from None

    def compute(self) -> dict[str, float]:
        scores: dict[str, float] = {}
        for name, metric in self.metrics.items():
            # Every rank computes every metric (the all-reduce is collective); only the tasks that saw a
            # sample somewhere are reported. A rank without samples would warn "compute before update".
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*compute.*before.*update")
                values = metric.compute()
            if values["n"]:
                scores.update({f"{name}/{key}": value for key, value in values.items()})
        return scores

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()


def score_samples(
    samples: Sequence[Scored], task: str = AUTO, options: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, float]:
    scorer = TaskScorer(task, options)
    scorer.update(samples)
    return scorer.compute()
