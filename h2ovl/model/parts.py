"""Loading a named pretrained part (ViT weights, an LLM, a tokenizer) with the failure a user can fix
turned into one named error. Its own module, so the vision encoder and the model config (which imports
the encoder's config) both use it without importing each other."""

from __future__ import annotations

from h2ovl.errors import UserError


class PretrainedPartError(UserError, ValueError):
    """A named pretrained part (weights, LLM, tokenizer) is neither a readable file or directory nor
    obtainable from its hub (offline, or no such id): a user's config error, not a crash."""


def resolve_part(key: str, name: str, load):
    """`load()`, with the library's not-found / offline errors turned into a `PretrainedPartError` that
    names the config key and value."""
    try:
        return load()
    except OSError as error:
        reason = str(error).strip().splitlines()[0]
        raise PretrainedPartError(
            f"{key} {name!r}: neither a local path nor obtainable from the hub ({reason}); with the network "
            "off, fill the cache first or name a local directory"
        ) from None
