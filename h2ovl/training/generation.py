"""Generation on evaluation batches: each sample's prompt (everything before its first answer) is
generated from, greedily and KV-cached, and the answer is returned with the record's reference (its first
answer and evaluation fields), ready to score; and the writer that puts the results in a jsonl file
(`h2ovl predict`, `h2ovl evaluate`)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from h2ovl.constants import IGNORE_INDEX
from h2ovl.model.h2ovl import H2OVL

log = logging.getLogger(__name__)


def prompt_batch(
    batch: dict, model: H2OVL, pad_token_id: int, rows: Sequence[int] | None = None
) -> dict[str, torch.Tensor]:
    """Left-padded prompts (up to each sample's first supervised token) of the batch's `rows` (all by
    default), with the tiles their images need."""
    wanted = set(range(len(batch["input_ids"])) if rows is None else rows)
    prompts, tiles = [], []
    tile_start = 0
    for row, (ids, labels, n_tiles) in enumerate(
        zip(batch["input_ids"], batch["labels"], batch["tiles_per_sample"].tolist())
    ):
        start, tile_start = tile_start, tile_start + int(n_tiles)
        if row not in wanted:
            continue
        first = int((labels != IGNORE_INDEX).nonzero().flatten()[0])
        prompt = ids[:first]
        # Only the images shown before the first answer belong to the prompt (they come first, in order).
        prompt_tiles = int((prompt == model.image_token_id).sum()) // model.tokens_per_tile
        tiles.append(batch["pixel_values"][start : start + prompt_tiles])
        prompts.append(prompt)
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=batch["input_ids"].dtype)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = prompt
        attention_mask[row, width - len(prompt) :] = 1
    pixel_values = torch.cat(tiles) if any(len(t) for t in tiles) else None
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}


@torch.no_grad()
def generate_answers(
    model: H2OVL,
    tokenizer: Any,
    batch: dict,
    max_new_tokens: int,
    rows: Sequence[int] | None = None,
    synced: bool = False,
) -> list[dict[str, Any]]:
    """Greedy answers to the first question of each of the batch's `rows`, as records
    `{"id", "dataset", "prediction", "answer", ...evaluation fields}` that `h2ovl score` reads.
    `synced`: every rank keeps stepping until all ranks are done (sharded models)."""
    rows = list(range(len(batch["ids"])) if rows is None else rows)
    if not rows:
        return []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    prompts = {k: v.to(device) if v is not None else None for k, v in prompt_batch(batch, model, pad, rows).items()}
    generated = model.generate(**prompts, max_new_tokens=max_new_tokens, **({"synced_gpus": True} if synced else {}))
    return [
        {
            "id": batch["ids"][row],
            "dataset": batch["datasets"][row],
            "prediction": tokenizer.decode(tokens, skip_special_tokens=True).strip(),
            **batch["references"][row],
        }
        for row, tokens in zip(rows, generated)
    ]


class PredictionWriter(BasePredictionWriter):
    """Writes `generate_answers`' records per sample to `<default_root_dir>/predictions.jsonl`
    (one file per rank, suffixed `.rank<N>`, under several processes)."""

    def __init__(self, path: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.path = path
        self.skipped: Counter[str] = Counter()
        """Bad samples left out of the predictions, per `<dataset>/<reason>`."""

    def _file(self, trainer: L.Trainer) -> Path:
        path = Path(self.path or Path(trainer.default_root_dir) / "predictions.jsonl")
        if trainer.world_size > 1:
            path = path.with_name(f"{path.name}.rank{trainer.global_rank}")
        return path

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.skipped:
            log.warning("prediction skipped %d bad samples: %s", sum(self.skipped.values()), dict(self.skipped))

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self._file(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self.skipped.clear()

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        self.skipped.update(batch.get("skipped", {}))
        with self._file(trainer).open("a", encoding="utf-8") as handle:
            for record in prediction:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
