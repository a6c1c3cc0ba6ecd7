"""Batches from samples: padding, or packing several samples into one sequence.

A packed row holds whole samples back to back; its `position_ids` restart at 0 for each sample, which
is how transformers' attention keeps samples apart (a block-diagonal causal mask with SDPA/eager, the
varlen kernel with FlashAttention-2) when no 2D attention mask is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from h2ovl.data.samples import Sample
from h2ovl.model.h2ovl import IGNORE_INDEX


def best_fit_row(lengths: Sequence[int], tiles: Sequence[int], max_tokens: int, max_tiles: int) -> list[int]:
    """Indices (into a buffer of candidates, oldest first) for one packed row: the oldest candidate, so
    none waits forever, then first-fit decreasing by length under both budgets."""
    chosen, used_tokens, used_tiles = [0], lengths[0], tiles[0]
    for i in sorted(range(1, len(lengths)), key=lambda i: (-lengths[i], i)):
        if used_tokens + lengths[i] <= max_tokens and used_tiles + tiles[i] <= max_tiles:
            chosen.append(i)
            used_tokens += lengths[i]
            used_tiles += tiles[i]
    return sorted(chosen)


def collate_rows(rows: Sequence[Sequence[Sample]], pad_token_id: int, packed: bool, pad_to_multiple_of: int = 8) -> dict:
    """Rows of samples (one sample per row unless packed) -> the model's batch.

    Keys: `input_ids`, `labels`, `position_ids`, `attention_mask` (1 on real tokens), `sample_index`
    (which sample of the batch each token belongs to, -1 on padding), `pixel_values` (uint8 tiles of all
    samples in token order), `tiles_per_sample`, `packed`, `ids`, `datasets`, `references`.
    """
    lengths = [sum(s.length for s in row) for row in rows]
    width = -(-max(lengths) // pad_to_multiple_of) * pad_to_multiple_of
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_token_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    attention_mask = torch.zeros(shape, dtype=torch.long)
    sample_index = torch.full(shape, -1, dtype=torch.long)
    samples = [s for row in rows for s in row]
    number = 0
    for r, row in enumerate(rows):
        offset = 0
        for sample in row:
            end = offset + sample.length
            input_ids[r, offset:end] = sample.input_ids
            labels[r, offset:end] = sample.labels
            position_ids[r, offset:end] = torch.arange(sample.length)
            sample_index[r, offset:end] = number
            offset, number = end, number + 1
        attention_mask[r, :offset] = 1
        # Padding is its own "sample" (positions restart) so a packed row never attends across it.
        position_ids[r, offset:] = torch.arange(width - offset)
    tiles = [s.tiles for s in samples]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "attention_mask": attention_mask,
        "sample_index": sample_index,
        "pixel_values": torch.cat(tiles) if tiles else torch.empty(0, dtype=torch.uint8),
        "tiles_per_sample": torch.tensor([s.n_tiles for s in samples], dtype=torch.long),
        "packed": packed,
        "ids": [s.id for s in samples],
        "datasets": [s.dataset for s in samples],
        "references": [s.reference for s in samples],
    }


def model_inputs(batch: dict) -> dict:
    """What `H2OVL.forward` takes from a batch: packed rows rely on restarting positions, padded rows
    on the attention mask (transformers ignores packing as soon as a 2D mask is given)."""
    inputs = {k: batch[k] for k in ("input_ids", "labels", "pixel_values", "position_ids")}
    inputs["attention_mask"] = None if batch["packed"] else batch["attention_mask"]
    return inputs
