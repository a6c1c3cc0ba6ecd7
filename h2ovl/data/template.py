"""The h2ogpt2 prompt template, image-token expansion, label masking and safe truncation.

`{system}<|prompt|>{question}<|end|><|answer|>{answer}<|end|>` per turn after the first, no BOS: the system
prompt (empty unless a record opens with a system turn) is plain text before the first question, as the
h2ogpt2 template's `system_template` "{system_message}" writes it, and never supervised.
Every `<image>` becomes `<img>` + `<IMG_CONTEXT>` x n + `</img>`, n being that image's tile count times
the model's tokens per tile. Only answers and their closing `<|end|>` are supervised.

Control tokens come from the template only. A sample is a list of segments: template markers and data
text. Markers that the tokenizer holds as added tokens (`<img>`, `<IMG_CONTEXT>`, `<|end|>`, and
`<|prompt|>`/`<|answer|>` where a tokenizer has them, as the tiny one does) are inserted by id; the rest
of the string is encoded as plain text with special tokens *not* parsed, so a record whose text holds
`<|end|>` or `<IMG_CONTEXT>` gets those characters, never the tokens. In the released tokenizers the
prompt and answer markers are ordinary text, so "<|answer|>12.50" is one run of text: its tokens are
labelled by the characters they came from, and a token that straddles the prompt/answer boundary makes
the sample a counted "tokenization" skip (the prompt's tokens alone must be a prefix of the sample's).
With `verify`, the ids must equal what the tokenizer makes of the whole string (when the data holds no
control strings), so training sees exactly what inference on the rendered prompt sees.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from h2ovl.constants import ANSWER, END, IGNORE_INDEX, IMG_CONTEXT, IMG_END, IMG_START, PROMPT
from h2ovl.data.records import IMAGE_PLACEHOLDER, BadSample
from h2ovl.errors import SettingError


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    images_kept: int
    """How many of the sample's images survive truncation (their spans are whole)."""


@dataclass(frozen=True)
class Segment:
    text: str
    control: bool
    """Put there by the template (a token where the tokenizer has it), not by the data."""
    supervised: bool = False


def conversation_segments(
    turns: Sequence[tuple[str, str]], image_tokens: Sequence[int], system: str = ""
) -> list[Segment]:
    """The template around the data's text, turn by turn; `<image>` placeholders take the images in order."""
    segments: list[Segment] = [Segment(system, False)] if system else []
    images_left = list(image_tokens)
    for question, answer in turns:
        pieces = question.split(IMAGE_PLACEHOLDER)
        if len(pieces) - 1 > len(images_left):
            raise ValueError(f"{len(pieces) - 1} placeholders but only {len(images_left)} images left")
        segments += [Segment(PROMPT, True), Segment(pieces[0], False)]
        for n_tokens, piece in zip(images_left, pieces[1:]):
            segments += [
                Segment(IMG_START, True),
                *[Segment(IMG_CONTEXT, True)] * n_tokens,
                Segment(IMG_END, True),
                Segment(piece, False),
            ]
        images_left = images_left[len(pieces) - 1 :]
        segments += [Segment(END, True), Segment(ANSWER, True), Segment(answer, False, True), Segment(END, True, True)]
    return segments


def control_token_ids(tokenizer: Any) -> dict[str, int]:
    """The template's tokens that `tokenizer` holds as added tokens, by id (never hard-coded). The image
    tokens and `<|end|>` are required; the prompt and answer markers are tokens only in some tokenizers."""
    added = tokenizer.get_added_vocab()
    missing = [t for t in (IMG_START, IMG_END, IMG_CONTEXT, END) if t not in added]
    if missing:
        raise SettingError(
            f"the tokenizer lacks the H2OVL tokens {missing} (load it with h2ovl.model.tokenizer.load_tokenizer)"
        )
    return {t: added[t] for t in (IMG_START, IMG_END, IMG_CONTEXT, END, PROMPT, ANSWER) if t in added}


def _plain_text_tokenizers(tokenizer: Any) -> tuple[Tokenizer, Tokenizer]:
    """Copies of the backend that never parse special tokens: one for text at the start of the string,
    one for text that follows a control token. transformers' whole-string call splits the string at
    special tokens and encodes the pieces between them; a Metaspace pre-tokenizer with
    `prepend_scheme="first"` adds its "▁" only to the piece at offset 0, which the second copy repeats."""
    config = json.loads(tokenizer.backend_tokenizer.to_str())
    first = Tokenizer.from_str(json.dumps(config))

    def never_first(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("never" if k == "prepend_scheme" and v == "first" else never_first(v)) for k, v in node.items()}
        return [never_first(v) for v in node] if isinstance(node, list) else node

    config["pre_tokenizer"] = never_first(config.get("pre_tokenizer"))
    inner = Tokenizer.from_str(json.dumps(config))
    for backend in (first, inner):
        backend.encode_special_tokens = True
    return first, inner


class ConversationEncoder:
    """Turns (question, answer) pairs into token ids and labels.

    Args:
        tokenizer: a tokenizer holding the image tokens and `<|end|>` (`load_tokenizer`).
        max_length: the most tokens a sample keeps (None: no limit).
        verify: compare the ids with the tokenizer's own encoding of the whole string.
    """

    def __init__(self, tokenizer: Any, max_length: int | None = None, verify: bool = True) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.verify = verify
        self.control_ids = control_token_ids(tokenizer)
        self.img_start_id, self.img_end_id, self.img_context_id = (
            self.control_ids[t] for t in (IMG_START, IMG_END, IMG_CONTEXT)
        )
        self._special_strings = [t for t in tokenizer.get_added_vocab() if t]
        self._first_text, self._inner_text = _plain_text_tokenizers(tokenizer)

    def encode(
        self, turns: Sequence[tuple[str, str]], image_tokens: Sequence[int], where: str = "", system: str = ""
    ) -> Encoded:
        """Raises `BadSample` ("truncated", "tokenization", "image_mismatch") rather than return a sample
        without supervision or with a wrong image-token count."""
        try:
            segments = conversation_segments(turns, image_tokens, system)
        except ValueError as error:
            raise BadSample("image_mismatch", where, str(error)) from None
        input_ids, labels = self.encode_segments(segments, where)
        if self.verify and not self._data_holds_special_strings(segments):
            whole = self.tokenizer("".join(s.text for s in segments), add_special_tokens=False)["input_ids"]
            if whole != input_ids:
                raise BadSample(
                    "tokenization",
                    where,
                    "the tokenizer encodes the whole string differently from the template's pieces",
                )
        spans = self._image_spans(input_ids)
        if len(spans) != len(image_tokens) or input_ids.count(self.img_context_id) != sum(image_tokens):
            raise BadSample("image_mismatch", where, f"{len(spans)} image spans for {len(image_tokens)} images")
        images_kept = len(image_tokens)
        if self.max_length is not None and len(input_ids) > self.max_length:
            input_ids, labels, images_kept = self._truncate(input_ids, labels, spans)
        if all(label == IGNORE_INDEX for label in labels):
            raise BadSample("truncated", where, f"max_length={self.max_length} cuts away every answer token")
        return Encoded(input_ids=input_ids, labels=labels, images_kept=images_kept)

    def encode_prompt(self, question: str, image_tokens: Sequence[int] = (), system: str = "") -> list[int]:
        """The ids of a generation prompt: one question turn ending right after `<|answer|>`, `<image>`
        placeholders taking the images' visual-token counts in order. The question stays text: a control
        token's string in it is not that token."""
        try:
            segments = conversation_segments([(question, "")], image_tokens, system)
        except ValueError as error:
            raise SettingError(f"prompt {question[:60]!r}: {error}") from None
        if question.count(IMAGE_PLACEHOLDER) != len(image_tokens):
            raise SettingError(
                f"prompt {question[:60]!r}: {question.count(IMAGE_PLACEHOLDER)} {IMAGE_PLACEHOLDER} placeholders "
                f"for {len(image_tokens)} images"
            )
        answer_at = max(i for i, segment in enumerate(segments) if segment.control and segment.text == ANSWER)
        input_ids, _ = self.encode_segments(segments[: answer_at + 1])
        return input_ids

    def encode_segments(self, segments: Sequence[Segment], where: str = "") -> tuple[list[int], list[int]]:
        """(ids, labels): control segments by id where the tokenizer has them, runs of text between them
        encoded as plain text; a token is supervised when the character it starts at is."""
        input_ids: list[int] = []
        labels: list[int] = []
        run: list[Segment] = []

        def flush() -> None:
            text = "".join(s.text for s in run)
            if text:
                backend = self._inner_text if input_ids else self._first_text
                encoding = backend.encode(text, add_special_tokens=False)
                supervised, boundaries, position = [], set(), 0
                for segment in run:
                    supervised += [segment.supervised] * len(segment.text)
                    if position and segment.text and supervised[position - 1] != segment.supervised:
                        boundaries.add(position)
                    position += len(segment.text)
                for token, (start, end) in zip(encoding.ids, encoding.offsets):
                    if any(start < b < end for b in boundaries):
                        raise BadSample(
                            "tokenization",
                            where,
                            f"token {text[start:end]!r} straddles the end of the prompt and the start of the answer",
                        )
                    input_ids.append(token)
                    labels.append(token if supervised[min(start, len(text) - 1)] else IGNORE_INDEX)
            run.clear()

        for segment in segments:
            token_id = self.control_ids.get(segment.text) if segment.control else None
            if token_id is None:
                run.append(segment)
                continue
            flush()
            input_ids.append(token_id)
            labels.append(token_id if segment.supervised else IGNORE_INDEX)
        flush()
        return input_ids, labels

    def _data_holds_special_strings(self, segments: Sequence[Segment]) -> bool:
        """Whether data text holds a string the tokenizer would parse as a token (the whole-string
        encoding then differs from ours on purpose: data never makes control tokens)."""
        return any(special in s.text for s in segments if not s.control for special in self._special_strings)

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
