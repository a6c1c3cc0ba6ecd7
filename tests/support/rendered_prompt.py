"""The generation prompt rendered as a string, the plain way: the oracle the template tests compare the
token-level `ConversationEncoder` against (the package itself never renders prompts as text)."""

from __future__ import annotations

from collections.abc import Sequence

from h2ovl.constants import ANSWER, END, IMG_CONTEXT, IMG_END, IMG_START, PROMPT
from h2ovl.data.records import IMAGE_PLACEHOLDER


def render_prompt(question: str, image_tokens: Sequence[int] = ()) -> str:
    """The prompt for one question: ends right after `<|answer|>`."""
    pieces = question.split(IMAGE_PLACEHOLDER)
    if len(pieces) - 1 != len(image_tokens):
        raise ValueError(f"question has {len(pieces) - 1} placeholders for {len(image_tokens)} images")
    spans = [IMG_START + IMG_CONTEXT * n + IMG_END for n in image_tokens]
    return PROMPT + pieces[0] + "".join(span + piece for span, piece in zip(spans, pieces[1:])) + END + ANSWER
