"""The h2ogpt2 prompt template, image-token expansion, label masking and safe truncation.

`<|prompt|>{question}<|end|><|answer|>{answer}<|end|>` per turn, no system prompt and no BOS.
Every `<image>` becomes `<img>` + `<IMG_CONTEXT>` x n + `</img>`, n being that image's tile count times
the model's tokens per tile. Only answers and their closing `<|end|>` are supervised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from h2ovl.data.records import IMAGE_PLACEHOLDER, BadSample
from h2ovl.model.h2ovl import IGNORE_INDEX
from h2ovl.model.tokenizer import ANSWER, END, IMG_CONTEXT, IMG_END, IMG_START, PROMPT, special_token_ids


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    images_kept: int
    """How many of the sample's images survive truncation (their spans are whole)."""


def image_span(n_tokens: int) -> str:
    return IMG_START + IMG_CONTEXT * n_tokens + IMG_END


def expand_images(text: str, image_tokens: Sequence[int]) -> tuple[str, int]:
    """`text` with its `<image>` placeholders replaced by spans for the next images; returns how many it used."""
    pieces = text.split(IMAGE_PLACEHOLDER)
    if len(pieces) - 1 > len(image_tokens):
        raise ValueError(f"{len(pieces) - 1} placeholders but only {len(image_tokens)} images left")
    out = [pieces[0]]
    for n_tokens, piece in zip(image_tokens, pieces[1:]):
        out += [image_span(n_tokens), piece]
    return "".join(out), len(pieces) - 1


def render_prompt(question: str, image_tokens: Sequence[int] = ()) -> str:
    """The generation prompt for one question: ends right after `<|answer|>`."""
    text, used = expand_images(question, image_tokens)
    if used != len(image_tokens):
        raise ValueError(f"question has {used} placeholders for {len(image_tokens)} images")
    return PROMPT + text + END + ANSWER


class ConversationEncoder:
    """Turns (question, answer) pairs into token ids and labels.

    Args:
        tokenizer: a tokenizer holding the template and image tokens (`ensure_special_tokens`).
        max_length: the most tokens a sample keeps (None: no limit).
        verify: compare the turn-by-turn tokenization with the tokenization of the whole string.
    """

    def __init__(self, tokenizer, max_length: int | None = None, verify: bool = True) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.verify = verify
        ids = special_token_ids(tokenizer)
        self.img_start_id, self.img_end_id, self.img_context_id = ids[IMG_START], ids[IMG_END], ids[IMG_CONTEXT]

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, turns: Sequence[tuple[str, str]], image_tokens: Sequence[int], where: str = "") -> Encoded:
        """Raises `BadSample` ("truncated", "tokenization") rather than return a sample without supervision."""
        input_ids: list[int] = []
        labels: list[int] = []
        pieces: list[str] = []
        images_left = list(image_tokens)
        for question, answer in turns:
            question, used = expand_images(question, images_left)
            images_left = images_left[used:]
            prompt, reply = PROMPT + question + END + ANSWER, answer + END
            prompt_ids, reply_ids = self._ids(prompt), self._ids(reply)
            input_ids += prompt_ids + reply_ids
            labels += [IGNORE_INDEX] * len(prompt_ids) + reply_ids
            pieces += [prompt, reply]
        if self.verify and self._ids("".join(pieces)) != input_ids:
            raise BadSample("tokenization", where, "a turn boundary merges tokens; check the tokenizer's special tokens")
        spans = self._image_spans(input_ids)
        if len(spans) != len(image_tokens) or input_ids.count(self.img_context_id) != sum(image_tokens):
            raise BadSample("image_mismatch", where, f"the text itself holds {IMG_START}, {IMG_END} or {IMG_CONTEXT}")
        images_kept = len(image_tokens)
        if self.max_length is not None and len(input_ids) > self.max_length:
            input_ids, labels, images_kept = self._truncate(input_ids, labels, spans)
        if all(label == IGNORE_INDEX for label in labels):
            raise BadSample("truncated", where, f"max_length={self.max_length} cuts away every answer token")
        return Encoded(input_ids=input_ids, labels=labels, images_kept=images_kept)

    def _image_spans(self, input_ids: list[int]) -> list[tuple[int, int]]:
        starts = [i for i, token in enumerate(input_ids) if token == self.img_start_id]
        ends = [i for i, token in enumerate(input_ids) if token == self.img_end_id]
        return list(zip(starts, ends)) if len(starts) == len(ends) else []

    def _truncate(
        self, input_ids: list[int], labels: list[int], spans: list[tuple[int, int]]
    ) -> tuple[list[int], list[int], int]:
        """Cut at max_length, moved back to the start of an image span it would split."""
        cut = self.max_length
        kept = 0
        for start, end in spans:
            if end < cut:
                kept += 1
            else:
                cut = min(cut, start)
                break
        return input_ids[:cut], labels[:cut], kept
