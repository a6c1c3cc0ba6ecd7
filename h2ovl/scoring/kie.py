"""Key information extraction, scored as Donut scores JSON (Kim et al. 2022, `JSONParseEvaluator`).

- **normalized tree-edit-distance accuracy**: max(0, 1 - TED(pred, gt) / TED(empty, gt)) over Donut's
  trees (keys sorted, empty values dropped, leaves labelled with their text; a leaf's update cost is the
  Levenshtein distance of the texts, inserting or removing a leaf costs its length);
- **field-level F1** over (key path, value) pairs, corpus-level (Donut's `cal_f1` sums over samples);
- **perfect match**: the normalized prediction equals the normalized reference;
- **JSON parse rate**; a prediction that does not parse as a JSON object is scored as `{}`;
- **score**: the paper's average of perfect match, TED accuracy and F1.

The tree edit distance is `zss` (Zhang-Shasha), the library Donut itself uses; leaf texts are compared
with an exact Levenshtein distance (rapidfuzz), as Donut's nltk one is. Donut's quirks are kept: a label
that *contains* "<leaf>" is a leaf, and every "<leaf>" in it is removed before comparing.

By default a prediction must be, as a whole, one JSON object (Donut's reading). Two readings of ours are
options, off by default so a reported number means what the paper's does: `extract_json` also takes the
JSON out of a code fence or out of the prose around the outermost `{...}`; `accept_lists` scores a
top-level JSON list (prediction or reference) as Donut's trees do. A prediction is read by Python's
`json`, as Donut reads it, so the non-JSON literals NaN and Infinity parse (to leaves "nan", "inf"); a
reference holding them is an error, since no dataset's JSON writer emits them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import torch
import zss
from rapidfuzz.distance import Levenshtein

from h2ovl.scoring.base import AnswerMetric

_LEAF = "<leaf>"
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_loads(text: str) -> Any:
    """Strict JSON for references: Python's reader would take NaN and Infinity, which no JSON writer emits."""
    return json.loads(text, parse_constant=_refuse_constant)


def parse_prediction(text: str, extract_json: bool = False, accept_lists: bool = False) -> tuple[dict | list, bool]:
    """(the JSON a model wrote, whether it parsed); anything that does not parse is `{}`.

    The whole text must be one JSON object (a list too with `accept_lists`); `extract_json` also tries
    the inside of a code fence and the outermost `{...}` of the text."""
    text = text.strip()
    candidates = [text]
    if extract_json:
        fenced = _FENCE.match(text)
        if fenced:
            candidates.append(fenced.group(1))
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)  # Donut's reading: NaN/Infinity are accepted
        except ValueError:  # JSONDecodeError is a ValueError, as is a refused constant
            continue
        if isinstance(value, dict) or (accept_lists and isinstance(value, list)):
            return value, True
    return {}, False


def parse_reference(text: str, accept_lists: bool = False) -> dict | list:
    """A reference answer's JSON; a reference that is not a JSON object is an error, not a zero."""
    try:
        value = _strict_loads(text)
    except ValueError as error:
        raise ValueError(f"KIE reference is not valid JSON ({error}): {text[:80]!r}") from None
    if not (isinstance(value, dict) or (accept_lists and isinstance(value, list))):
        allowed = "a JSON object" + (" or list" if accept_lists else " (a list needs accept_lists)")
        raise ValueError(f"KIE reference must be {allowed}, got {type(value).__name__}: {text[:80]!r}")
    return value


def normalize(data: Any) -> Any:
    """Donut's `normalize_dict`: keys sorted by (length, name), empty values dropped, scalars as stripped
    strings in lists."""
    if not data:
        return {}
    if isinstance(data, dict):
        out = {}
        for key in sorted(data, key=lambda k: (len(k), k)):
            value = normalize(data[key])
            if value:
                out[key] = value if isinstance(value, list) else [value]
        return out
    if isinstance(data, list):
        if all(isinstance(item, dict) for item in data):
            return [item for item in (normalize(item) for item in data) if item]
        return [str(item).strip() for item in data if type(item) in (str, int, float) and str(item).strip()]
    return [str(data).strip()]


def flatten(data: Any, key: str = "") -> list[tuple[str, str]]:
    """(key path, value) pairs; list items share their parent's path."""
    if isinstance(data, dict):
        return [pair for child, value in data.items() for pair in flatten(value, f"{key}.{child}" if key else child)]
    if isinstance(data, list):
        return [pair for item in data for pair in flatten(item, key)]
    return [(key, data)]


def tree(data: Any, label: str = "<root>") -> zss.Node:
    node = zss.Node(label)
    if isinstance(data, dict):
        for key, value in data.items():
            node.addkid(tree(value, key))
    elif isinstance(data, list):
        if all(isinstance(item, dict) for item in data):
            for item in data:
                node.addkid(tree(item, "<subtree>"))
        else:
            for item in data:
                node.addkid(zss.Node(f"{_LEAF}{item}"))
    else:
        raise ValueError(f"cannot build a tree from {data!r} under {label!r}")
    return node


def _is_leaf(node: zss.Node) -> bool:
    return _LEAF in node.label  # Donut's test: a key containing "<leaf>" counts as a leaf too


def _text(node: zss.Node) -> str:
    return node.label.replace(_LEAF, "")


def _update_cost(a: zss.Node, b: zss.Node) -> int:
    a_leaf, b_leaf = _is_leaf(a), _is_leaf(b)
    if a_leaf and b_leaf:
        return Levenshtein.distance(_text(a), _text(b))
    if a_leaf != b_leaf:
        return 1 + len(_text(a if a_leaf else b))
    return int(a.label != b.label)


def _insert_remove_cost(node: zss.Node) -> int:
    return len(_text(node)) if _is_leaf(node) else 1


def tree_edit_distance(pred: Any, answer: Any) -> int:
    """TED between two *normalized* JSON values with Donut's costs."""
    return zss.distance(
        tree(pred),
        tree(answer),
        get_children=zss.Node.get_children,
        insert_cost=_insert_remove_cost,
        remove_cost=_insert_remove_cost,
        update_cost=_update_cost,
    )


def ted_accuracy(pred: Any, answer: Any) -> float:
    """max(0, 1 - TED(pred, gt) / TED({}, gt)) on normalized values; an empty reference is matched only
    by an empty prediction (Donut divides by zero there)."""
    pred, answer = normalize(pred), normalize(answer)
    empty = tree_edit_distance({}, answer)
    if empty == 0:
        return float(tree_edit_distance(pred, answer) == 0)
    return max(0.0, 1.0 - tree_edit_distance(pred, answer) / empty)


def field_counts(pred: Any, answer: Any) -> tuple[int, int]:
    """(true positives, false negatives + false positives) over (key path, value) pairs."""
    predicted, expected = flatten(normalize(pred)), flatten(normalize(answer))
    true_positives = wrong = 0
    for pair in predicted:
        if pair in expected:
            true_positives += 1
            expected.remove(pair)
        else:
            wrong += 1
    return true_positives, wrong + len(expected)


class KIEScore(AnswerMetric):
    """`perfect_match`, `ted_accuracy`, `field_f1`, `json_parse_rate` and `score` (the mean of the first
    three). The first reference answer is the ground-truth JSON (an object, or its text).

    Args:
        extract_json: also read JSON out of a code fence or the prose around it (ours; off: Donut's reading).
        accept_lists: score top-level JSON lists (ours; off: a prediction must be an object).
    """

    higher_is_better = True

    def __init__(self, extract_json: bool = False, accept_lists: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.extract_json, self.accept_lists = extract_json, accept_lists
        for name, dtype in (
            ("perfect", torch.long),
            ("ted", torch.float64),
            ("parsed", torch.long),
            ("true_positives", torch.long),
            ("wrong_fields", torch.long),
        ):
            self.add_state(name, default=torch.tensor(0, dtype=dtype), dist_reduce_fx="sum")

    def score_batch(self, preds: list[str], answers: list[list[str]], categories: list[str | None]) -> None:
        references = [
            parse_reference(refs[0], self.accept_lists) for refs in answers
        ]  # checked before any state changes
        for text, answer in zip(preds, references):
            pred, parsed = parse_prediction(text, self.extract_json, self.accept_lists)
            self.parsed += int(parsed)
            self.perfect += int(normalize(pred) == normalize(answer))
            self.ted += ted_accuracy(pred, answer)
            true_positives, wrong = field_counts(pred, answer)
            self.true_positives += true_positives
            self.wrong_fields += wrong

    def scores(self) -> dict[str, float]:
        n = int(self.n)
        denominator = float(self.true_positives) + float(self.wrong_fields) / 2
        f1 = float(self.true_positives) / denominator if denominator else 1.0  # nothing expected, nothing predicted
        perfect, ted = float(self.perfect) / n, float(self.ted) / n
        return {
            "perfect_match": perfect,
            "ted_accuracy": ted,
            "field_f1": f1,
            "json_parse_rate": float(self.parsed) / n,
            "score": (perfect + ted + f1) / 3,
        }
