"""Loading a named pretrained part (ViT weights, an LLM, a tokenizer, a released model) with the failure a
user can fix turned into one named error, and hub ids resolved to their folder in the hub's cache. Its own
module, so the vision encoder and the model config (which imports the encoder's config) both use it
without importing each other."""

from __future__ import annotations

from pathlib import Path

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


def resolve_folder(key: str, name: str) -> Path:
    """A local folder as it is, or a hub id (`org/name`) as its snapshot folder in the Hugging Face cache:
    downloaded when the network allows, the cached copy with `HF_HUB_OFFLINE=1`."""
    path = Path(name).expanduser()
    if path.exists():
        return path

    def download() -> Path:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))

    try:
        return resolve_part(key, name, download)
    except ValueError as error:  # the hub's id validation: neither a path nor an id
        if isinstance(error, PretrainedPartError):
            raise
        raise PretrainedPartError(f"{key} {name!r}: no such file or folder, and not a hub id ({error})") from None
