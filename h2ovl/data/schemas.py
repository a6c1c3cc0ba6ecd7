"""Rows of the conversation schemas VLM instruction sets are published in, as records.

A row (a Hugging Face dataset row, a WebDataset sample's JSON) holds one of:
- `conversations`: `[{"from": "human"|"gpt"|"system", "value"}]` (InternVL, LLaVA), with `image` or `images`;
- `messages`: `[{"role": "user"|"assistant"|"system", "content": str | [{"type": "text", "text"} | {"type": "image"}]}]`
  (the chat format; an image part marks where an image goes), with `images`;
- `texts`: `[{"user", "assistant"}]` with `images` (HuggingFaceM4's the_cauldron);
- `question` and `answer` (or `answers`) columns, with `image` or `images`.
`columns` renames a dataset's own column names to these (`{"conversations": "dialog"}`). Images are
`{bytes, path}` structs (the `datasets` Image feature), raw bytes, or paths relative to the dataset's root.
Anything else is a `BadSample` naming the row, counted like every other bad record.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from h2ovl.data.records import IMAGE_PLACEHOLDER, BadSample
from h2ovl.preprocessing.image_io import ImageSource

SCHEMAS = ("conversations", "messages", "texts", "question")
_ROLES = {"user": "human", "assistant": "gpt", "system": "system", "human": "human", "gpt": "gpt"}


def _renamed(row: Mapping[str, Any], columns: Mapping[str, str] | None) -> dict[str, Any]:
    """The row under our column names: `columns` maps ours to the dataset's."""
    if not columns:
        return dict(row)
    out = dict(row)
    for ours, theirs in columns.items():
        if theirs in row:
            out[ours] = row[theirs]
    return out


def image_source(value: Any, root: Path, where: str) -> ImageSource:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value:
        return root / value
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return root / value["path"]
    raise BadSample(
        "image_error", where, f"an image is neither bytes, a {{bytes, path}} struct nor a path: {str(value)[:80]!r}"
    )


def row_images(row: Mapping[str, Any], root: Path, where: str) -> list[ImageSource]:
    value = row.get("images", row.get("image"))
    if value is None:
        return []
    values = value if isinstance(value, (list, tuple)) else [value]
    return [image_source(v, root, where) for v in values if v is not None]


def _message_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "image":
                parts.append(IMAGE_PLACEHOLDER)
            elif kind == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise BadSample("malformed_json", where, f"a message part is {str(part)[:80]!r}")
        return "".join(parts)
    raise BadSample("malformed_json", where, f"a message's content is {str(content)[:80]!r}")


def conversation_turns(row: Mapping[str, Any], where: str) -> list[dict[str, str]]:
    """The row's turns as `conversations` (`from`/`value`)."""
    if row.get("conversations") is not None:
        turns = row["conversations"]
        if not isinstance(turns, list):
            raise BadSample("no_conversations", where, f"'conversations' is {type(turns).__name__}")
        return list(turns)
    if row.get("messages") is not None:
        turns = []
        for message in row["messages"]:
            if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
                raise BadSample("not_alternating", where, f"a message is {str(message)[:80]!r}")
            turns.append({"from": _ROLES[message["role"]], "value": _message_text(message.get("content"), where)})
        return turns
    if row.get("texts") is not None:
        turns = []
        for exchange in row["texts"]:
            if not isinstance(exchange, Mapping):
                raise BadSample("malformed_json", where, f"a 'texts' entry is {str(exchange)[:80]!r}")
            turns += [
                {"from": "human", "value": exchange.get("user")},
                {"from": "gpt", "value": exchange.get("assistant")},
            ]
        return turns
    if isinstance(row.get("question"), str):
        answer = row.get("answer", row.get("answers"))
        answer = answer[0] if isinstance(answer, list) and answer else answer
        return [{"from": "human", "value": row["question"]}, {"from": "gpt", "value": answer}]
    raise BadSample(
        "no_conversations",
        where,
        f"none of the columns {list(SCHEMAS)} (the row has {sorted(row)[:12]}); "
        "map the dataset's own names with 'columns' in the meta file",
    )


def row_to_record(
    row: Mapping[str, Any],
    where: str,
    root: Path,
    columns: Mapping[str, str] | None = None,
    images: list[ImageSource] | None = None,
) -> tuple[dict[str, Any], list[ImageSource]]:
    """(a raw record for `to_record`, the images in order). `images` replaces the row's own (WebDataset
    keeps them in files beside the JSON)."""
    row = _renamed(row, columns)
    sources = row_images(row, root, where) if images is None else images
    raw: dict[str, Any] = {"id": str(row.get("id", where)), "conversations": conversation_turns(row, where)}
    if sources:
        # to_record counts placeholders against these names; the pixels travel as `sources`
        raw["image"] = [str(s) if isinstance(s, Path) else f"<image {i} of {where}>" for i, s in enumerate(sources)]
    return raw, sources
