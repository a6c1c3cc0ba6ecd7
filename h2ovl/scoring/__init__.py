"""Benchmark scorers (torchmetrics `Metric`s, exact under DDP) and model evaluation.

Tasks: `ocrbench` (substring rule), `anls` (DocVQA/InfoVQA), `vqa` (TextVQA accuracy), `kie` (Donut's
JSON scores), `cer` (CER, WER, exact match), `relaxed` (ChartQA's relaxed accuracy); `auto` picks each sample's task from its `scorer` field.
"""

from h2ovl.scoring.prediction_files import read_predictions
from h2ovl.scoring.tasks import AUTO, TASKS, PredictionsError, Scored, TaskScorer, score_samples

__all__ = ["AUTO", "TASKS", "PredictionsError", "Scored", "TaskScorer", "read_predictions", "score_samples"]
