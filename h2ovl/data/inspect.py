"""`h2ovl data inspect`: build every sample of a mixture (or a benchmark file) once, as training would, and summarise.

What a researcher checks before a long run: per dataset, how many records build, why the others do
not, and the token and tile counts the chosen model and preprocessor produce.
"""

from __future__ import annotations

from collections import Counter

from h2ovl.data.records import BadSample
from h2ovl.data.samples import SampleBuilder
from h2ovl.data.sources import open_sources
from h2ovl.data.template import ConversationEncoder


def inspect_mixture(meta: str, preset: str = "tiny", limit: int | None = None, max_length: int = 2048) -> dict:
    from h2ovl.model.h2ovl import H2OVL

    model, tokenizer = H2OVL.from_preset(preset)
    sources = open_sources(meta)
    builder = SampleBuilder(sources, model.build_preprocessor(), ConversationEncoder(tokenizer, max_length), model.tokens_per_tile)
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
        summary[source.spec.name] = {
            "records": len(source),
            "built": built,
            "skipped": dict(skipped),
            "mean_tokens": round(sum(lengths) / built, 1) if built else 0,
            "max_tokens": max(lengths, default=0),
            "mean_tiles": round(sum(tiles) / built, 2) if built else 0,
        }
    return summary
