"""Batches from samples: padding, or packing several samples into one sequence.

A packed row holds whole samples back to back; its `position_ids` restart at 0 for each sample, which
is how transformers' attention keeps samples apart (a block-diagonal causal mask with SDPA/eager, the
varlen kernel with FlashAttention-2) when no 2D attention mask is given. Older transformers releases
did not, and packed samples would silently attend to each other: `require_packed_rows_isolated` checks
the installed release once, by behaviour, before packing is used.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from h2ovl.constants import IGNORE_INDEX
from h2ovl.data.samples import Sample
from h2ovl.errors import SettingError


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


def length_grouped_batch(lengths: Sequence[int], batch_size: int) -> list[int]:
    """Indices (into a buffer of candidates, oldest first) for one padded batch of similar lengths: the
    oldest candidate, so none waits forever, and the `batch_size - 1` others that make the tightest window
    of lengths around it (ties: the older ones)."""
    if len(lengths) <= batch_size:
        return list(range(len(lengths)))
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    where = order.index(0)
    starts = range(max(0, where - batch_size + 1), min(where, len(order) - batch_size) + 1)
    best = min(starts, key=lambda s: (lengths[order[s + batch_size - 1]] - lengths[order[s]], s))
    return sorted(order[best : best + batch_size])


def collate_rows(
    rows: Sequence[Sequence[Sample]], pad_token_id: int, packed: bool, pad_to_multiple_of: int = 8
) -> dict:
    """Rows of samples (one sample per row unless packed) -> the model's batch.

    Keys: `input_ids`, `labels`, `position_ids`, `attention_mask` (1 on real tokens), `sample_index`
    (which sample of the batch each token belongs to, -1 on padding), `pixel_values` (uint8 tiles of all
    samples in token order), `tiles_per_sample`, `packed`, `ids`, `datasets`, `references`, and where the
    loss is computed (`supervision`).
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
        **supervision(labels, sample_index),
    }


def supervision(labels: torch.Tensor, sample_index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where a batch's loss is computed, found here on the host so the training step needs no host sync
    (selecting the supervised positions on the GPU would wait for their count): `loss_positions`, the flat
    indices into the batch's rows x width positions whose next token is supervised; `loss_targets`, those
    next tokens; `loss_owners`, the sample (of the batch) each belongs to."""
    width = labels.shape[1]
    row, column = (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)
    return {
        "loss_positions": row * width + column,
        "loss_targets": labels[row, column + 1],
        "loss_owners": sample_index[row, column + 1],
    }


def model_inputs(batch: dict) -> dict:
    """What `H2OVL.forward` takes from a batch: packed rows rely on restarting positions, padded rows
    on the attention mask (transformers ignores packing as soon as a 2D mask is given)."""
    inputs = {k: batch[k] for k in ("input_ids", "labels", "pixel_values", "position_ids")}
    inputs["attention_mask"] = None if batch["packed"] else batch["attention_mask"]
    return inputs


@functools.cache
def packed_rows_isolated() -> bool:
    """Whether the installed transformers keeps samples packed into one row apart: a one-layer Llama's
    logits for a sample packed behind another (positions restarting) equal those of the sample alone."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=16,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        attn_implementation="sdpa",
    )
    with torch.random.fork_rng(devices=[]):  # leaves the run's seeded RNG untouched
        torch.manual_seed(0)
        llm = LlamaForCausalLM(config).eval()
    first, second = torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5, 6, 7]])
    positions = torch.tensor([[0, 1, 2, 0, 1, 2, 3]])
    with torch.no_grad():
        alone = llm(input_ids=second, use_cache=False).logits
        packed = llm(input_ids=torch.cat([first, second], 1), position_ids=positions, use_cache=False).logits[:, 3:]
    return torch.allclose(alone, packed, atol=1e-5)


def require_packed_rows_isolated() -> None:
    """Refuse packing where samples of one row would attend to each other."""
    if not packed_rows_isolated():
        import transformers

        raise SettingError(
            f"data.batching.pack_tokens: transformers {transformers.__version__} does not keep packed samples apart "
            "(no block-diagonal attention from restarting position_ids), so they would attend to each other; "
            "upgrade transformers (see setup.cfg) or set data.batching.pack_tokens to null"
        )
