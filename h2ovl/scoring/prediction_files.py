"""Reading prediction files: our jsonl (one record per line) and OCRBench's own JSON list.

A record holds `prediction` (OCRBench: `predict`), a string, and its references as `answers` (a list of
strings, or one string), or `answer` (a string, or a JSON object/list for KIE, kept as its JSON text).
`category` (OCRBench: `type`) is the OCRBench category; `scorer` names the task for `--task auto`.
An empty prediction is scored (it scores 0 on every accuracy-like metric); anything else malformed is an
error naming the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from h2ovl.scoring.tasks import PredictionsError, Scored


def _answers(raw: dict[str, Any], where: str) -> tuple[str, ...]:
    if "answers" in raw:
        value = raw["answers"]
        answers = [value] if isinstance(value, str) else value
    elif "answer" in raw:
        value = raw["answer"]
        answers = [json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value]
    else:
        raise PredictionsError(f"{where}: no 'answers' or 'answer' field")
    if not isinstance(answers, list) or not answers:
        raise PredictionsError(f"{where}: the answers must be a non-empty list of strings, got {value!r}")
    for answer in answers:
        if not isinstance(answer, str):
            raise PredictionsError(f"{where}: an answer is {type(answer).__name__}, not a string: {answer!r}")
        if not answer.strip():
            raise PredictionsError(f"{where}: an answer is empty")
    return tuple(answers)


def to_scored(raw: Any, where: str) -> Scored:
    if not isinstance(raw, dict):
        raise PredictionsError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    key = "prediction" if "prediction" in raw else "predict" if "predict" in raw else None
    if key is None:
        raise PredictionsError(f"{where}: no 'prediction' (or OCRBench 'predict') field")
    prediction = raw[key]
    if not isinstance(prediction, str):
        raise PredictionsError(f"{where}: '{key}' is {type(prediction).__name__}, not a string: {prediction!r}")
    category = raw.get("category", raw.get("type"))
    if category is not None and not isinstance(category, str):
        raise PredictionsError(f"{where}: 'category' must be a string, got {category!r}")
    return Scored(
        id=str(raw.get("id", where)),
        prediction=prediction,
        answers=_answers(raw, where),
        category=category,
        scorer=raw.get("scorer"),
        where=where,
    )


def read_predictions(path: str | Path) -> list[Scored]:
    """Every record of a `.jsonl` file, or of a `.json` list (OCRBench's format)."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise PredictionsError(
            f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8"
        ) from None
    if path.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise PredictionsError(f"{path}: not valid JSON: {error}") from None
        if not isinstance(items, list):
            raise PredictionsError(f"{path}: a .json predictions file must hold a list of records")
        records = [to_scored(item, f"{path}[{i}]") for i, item in enumerate(items)]
    else:
        records = []
        # JSON Lines end records at "\n" only: str.splitlines() would also break inside strings holding
        # U+2028, U+2029 or U+0085, which json.dumps(ensure_ascii=False) writes as they are.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as error:
                raise PredictionsError(f"{where}: not valid JSON: {error}") from None
            records.append(to_scored(raw, where))
    if not records:
        raise PredictionsError(f"{path}: no records")
    return records
