"""`h2ovl data inspect`: build every sample of a mixture (or a benchmark file) once, as training would, and
summarise.

What a researcher checks before a long run: per dataset, how many records build, why the others do not,
and the token and tile counts the chosen model and preprocessor produce, as histograms. The real presets
(0.8B, 2B) need only their tokenizer (`--tokenizer`, a folder or hub id), their preprocessor and their
visual tokens per tile: the vision encoder is built on the meta device for its geometry, nothing else is
built, so a laptop answers in seconds what a GPU run would see.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from h2ovl.data.records import BadSample
from h2ovl.data.samples import SampleBuilder
from h2ovl.data.sources import open_sources
from h2ovl.data.template import ConversationEncoder


def preset_processing(preset_name: str, tokenizer_name: str | None = None) -> tuple[Any, Any, int]:
    """(tokenizer, preprocessor, visual tokens per tile) of a preset, without building its model."""
    import torch

    from h2ovl.errors import SettingError
    from h2ovl.model.config import preset
    from h2ovl.model.tokenizer import build_tiny_tokenizer, load_tokenizer
    from h2ovl.model.vision import VisionEncoder
    from h2ovl.preprocessing import instantiate_preprocessor, tokens_per_tile

    config = preset(preset_name)
    name = tokenizer_name or config.tokenizer
    if name:
        tokenizer = load_tokenizer(name)
    elif preset_name.startswith("tiny"):
        tokenizer = build_tiny_tokenizer()
    else:
        raise SettingError(
            f"preset {preset_name!r} needs its tokenizer: pass --tokenizer (a folder or hub id, e.g. "
            "h2oai/h2ovl-mississippi-800m)"
        )
    with torch.device("meta"):  # the encoder's geometry, no weights
        vision = VisionEncoder(config.vision)
    per_tile = tokens_per_tile(vision.tile_size, vision.patch_size, config.downsample_ratio)
    return tokenizer, instantiate_preprocessor(config.preprocessor).for_tile_size(vision.tile_size), per_tile


def _histogram(values: list[int], edges: list[int]) -> dict[str, int]:
    """Counts per bin `[edges[i], edges[i+1])`, the last bin open."""
    counts = Counter()
    for value in values:
        label = next((f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:]) if lo <= value < hi), f"{edges[-1]}+")
        counts[label] += 1
    order = [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+"]
    return {label: counts[label] for label in order if counts[label]}


def inspect_mixture(
    meta: str, preset: str = "tiny", limit: int | None = None, max_length: int = 2048, tokenizer: str | None = None
) -> dict:
    tok, preprocessor, per_tile = preset_processing(preset, tokenizer)
    sources = open_sources(meta)
    builder = SampleBuilder(sources, preprocessor, ConversationEncoder(tok, max_length), per_tile)
    summary = {}
    for d, source in enumerate(sources):
        lengths, tiles, skipped = [], [], Counter()
        for r in range(min(len(source), limit or len(source))):
            try:
                sample = builder.build(d, r)
            except BadSample as error:
                skipped[error.reason] += 1
                continue
            lengths.append(sample.length)
            tiles.append(sample.n_tiles)
        built = len(lengths)
        percentiles = np.percentile(lengths, [50, 90, 99]).round().astype(int).tolist() if built else [0, 0, 0]
        summary[source.spec.name] = {
            "records": len(source),
            "built": built,
            "skipped": dict(skipped),
            "mean_tokens": round(sum(lengths) / built, 1) if built else 0,
            "tokens_p50_p90_p99": percentiles,
            "max_tokens": max(lengths, default=0),
            "mean_tiles": round(sum(tiles) / built, 2) if built else 0,
            "tiles": {str(k): v for k, v in sorted(Counter(tiles).items())},
            "tokens": _histogram(lengths, [0, 256, 512, 1024, 2048, 4096, 8192]),
        }
    return summary
