"""Conversation records (InternVL / LLaVA jsonl format) and the checks that make one trainable.

A record is `{"id", "image": path | [paths] | absent, "conversations": [{"from": "human"|"gpt", "value"}]}`,
optionally opening with a `{"from": "system"}` turn (kept as the record's system prompt, as InternVL's
h2ogpt2 template puts it before the first question);
a benchmark record may instead hold one `question` with its `answers` (list) or `answer`. Evaluation fields
(`answers`, `category`, `scorer`, `task`) ride along as the record's `reference`.
Anything wrong with a record raises `BadSample`, whose `reason` is a short stable key (for counting
per dataset) and whose message names the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from h2ovl.errors import UserError

IMAGE_PLACEHOLDER = "<image>"
#: Fields kept for scoring (see `h2ovl.scoring`), next to the first answer's text.
REFERENCE_FIELDS = ("answers", "category", "scorer", "task")
USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "assistant"})
SYSTEM_ROLE = "system"


class BadSample(UserError):
    """A record (or its images) that cannot become a training sample: a counted skip, or with
    `on_bad_sample: raise` a one-line error naming it.

    `reason` is one of `REASONS`; `where` names the file and line (or list index).
    """

    def __init__(self, reason: str, where: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown bad-sample reason {reason!r}")
        super().__init__(f"{where}: {REASONS[reason]}: {detail}")
        self.reason = reason
        self.where = where


#: reason key -> what it means, for reports.
REASONS = {
    "malformed_json": "not a valid JSON object",
    "no_conversations": "record has no conversations",
    "not_alternating": "conversations must alternate human/gpt, starting with human and ending with gpt",
    "misplaced_system": "a system turn after the first turn (the template has one system prompt, before the first question)",
    "empty_answer": "an assistant answer is empty",
    "image_mismatch": "<image> placeholders do not match the record's images",
    "image_error": "an image could not be read",
    "image_outside_root": "an image path leaves the dataset's root (absolute, or through ..)",
    "truncated": "truncation to max_length left no supervised token",
    "tokenization": "turn-by-turn tokenization differs from the whole-string tokenization",
}


@dataclass(frozen=True)
class Record:
    """A validated conversation: (question, answer) turn pairs and image paths as written in the file."""

    id: str
    images: tuple[str, ...]
    turns: tuple[tuple[str, str], ...]
    where: str
    reference: dict[str, Any] = field(default_factory=dict, compare=False)
    """What the first answer is scored against: `answer` (its text) and the record's evaluation fields."""
    system: str = ""
    """The system prompt, from a leading system turn (text before the first question, never supervised)."""


def parse_line(line: str | bytes, where: str) -> dict[str, Any]:
    try:
        raw = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadSample("malformed_json", where, str(error)) from None
    if not isinstance(raw, dict):
        raise BadSample("malformed_json", where, f"expected an object, got {type(raw).__name__}")
    return raw


def to_record(raw: dict[str, Any], where: str) -> Record:
    """Validate one raw record; images without any placeholder get `<image>\\n` in front of the first question."""
    images = raw.get("image")
    if images is None:
        images = ()
    elif isinstance(images, str):
        images = (images,)
    elif isinstance(images, list) and all(isinstance(p, str) for p in images):
        images = tuple(images)
    else:
        raise BadSample("malformed_json", where, f"'image' must be a path or a list of paths, got {images!r}")

    conversations = raw.get("conversations")
    if conversations is None and isinstance(raw.get("question"), str):
        conversations = _question_turns(raw, where)
    if not isinstance(conversations, list) or not conversations:
        raise BadSample("no_conversations", where, "missing or empty 'conversations'")
    system = ""
    if isinstance(conversations[0], dict) and conversations[0].get("from") == SYSTEM_ROLE:
        system = conversations[0].get("value")
        if not isinstance(system, str):
            raise BadSample("malformed_json", where, f"the system turn's value is {system!r}, not text")
        if IMAGE_PLACEHOLDER in system:
            raise BadSample("image_mismatch", where, f"the system turn holds {IMAGE_PLACEHOLDER}")
        conversations = conversations[1:]
    if any(isinstance(turn, dict) and turn.get("from") == SYSTEM_ROLE for turn in conversations):
        raise BadSample("misplaced_system", where, "a system turn after the first turn")
    if not conversations:
        raise BadSample("no_conversations", where, "only a system turn")
    if len(conversations) % 2:
        raise BadSample("not_alternating", where, f"{len(conversations)} turns (odd)")
    turns = []
    for i in range(0, len(conversations), 2):
        question, answer = conversations[i], conversations[i + 1]
        for turn, roles, index in ((question, USER_ROLES, i), (answer, ASSISTANT_ROLES, i + 1)):
            if not isinstance(turn, dict) or turn.get("from") not in roles or not isinstance(turn.get("value"), str):
                raise BadSample("not_alternating", where, f"turn {index} is {turn!r}")
        if not answer["value"].strip():
            raise BadSample("empty_answer", where, f"turn {i + 1}")
        if IMAGE_PLACEHOLDER in answer["value"]:
            raise BadSample("image_mismatch", where, f"turn {i + 1} (an answer) holds {IMAGE_PLACEHOLDER}")
        turns.append((question["value"], answer["value"]))

    placeholders = sum(question.count(IMAGE_PLACEHOLDER) for question, _ in turns)
    if placeholders == 0 and images:
        first_question, first_answer = turns[0]
        turns[0] = ((IMAGE_PLACEHOLDER + "\n") * len(images) + first_question, first_answer)
    elif placeholders != len(images):
        raise BadSample(
            "image_mismatch", where, f"{placeholders} {IMAGE_PLACEHOLDER} placeholders for {len(images)} images"
        )
    reference = {"answer": turns[0][1], **{key: raw[key] for key in REFERENCE_FIELDS if key in raw}}
    return Record(
        id=str(raw.get("id", where)), images=images, turns=tuple(turns), where=where, reference=reference, system=system
    )


def _question_turns(raw: dict[str, Any], where: str) -> list[dict[str, str]]:
    """A benchmark record (`question` + `answers`/`answer`) as one exchange whose answer is the first one."""
    answers = raw.get("answers", raw.get("answer"))
    first = answers[0] if isinstance(answers, list) and answers else answers
    if isinstance(first, (dict, list)):  # KIE: the JSON object is the answer
        first = json.dumps(first, ensure_ascii=False)
    if not isinstance(first, str):
        raise BadSample("empty_answer", where, f"a 'question' record needs 'answers' or 'answer' text, got {answers!r}")
    return [{"from": "human", "value": raw["question"]}, {"from": "gpt", "value": first}]
