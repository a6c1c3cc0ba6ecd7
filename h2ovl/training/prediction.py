"""Generation on evaluation batches: each sample's prompt (everything before its first answer) is
generated from, greedily and KV-cached, with the first answer kept as the reference; and the writer that
puts the results in a jsonl file (`h2ovl predict`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from h2ovl.model.h2ovl import IGNORE_INDEX, H2OVL


def prompt_batch(batch: dict, model: H2OVL, pad_token_id: int) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Left-padded prompts (up to each sample's first supervised token) with the tiles their images need,
    and each sample's first reference answer as token ids."""
    prompts, references, tiles = [], [], []
    tile_start = 0
    for ids, labels, mask, n_tiles in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], batch["tiles_per_sample"].tolist()):
        supervised = (labels != IGNORE_INDEX).nonzero().flatten()
        first = int(supervised[0])
        prompt = ids[:first]
        # Only the images shown before the first answer belong to the prompt (they come first, in order).
        prompt_tiles = int((prompt == model.image_token_id).sum()) // model.tokens_per_tile
        tiles.append(batch["pixel_values"][tile_start : tile_start + prompt_tiles])
        tile_start += int(n_tiles)
        answer = labels[first:]
        ends = [i for i, token in enumerate(answer.tolist()) if token == IGNORE_INDEX or token in model.end_token_ids]
        references.append(answer[: ends[0] if ends else len(answer)])
        prompts.append(prompt)
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=batch["input_ids"].dtype)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = prompt
        attention_mask[row, width - len(prompt) :] = 1
    pixel_values = torch.cat(tiles) if any(len(t) for t in tiles) else None
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}, references


class PredictionWriter(BasePredictionWriter):
    """Writes `{"id", "dataset", "prediction", "answer"}` per sample to `<default_root_dir>/predictions.jsonl`
    (one file per rank, suffixed `.rank<N>`, under several processes)."""

    def __init__(self, path: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.path = path

    def _file(self, trainer: L.Trainer) -> Path:
        path = Path(self.path or Path(trainer.default_root_dir) / "predictions.jsonl")
        if trainer.world_size > 1:
            path = path.with_name(f"{path.name}.rank{trainer.global_rank}")
        return path

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self._file(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any, batch_indices: Any,
                           batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        with self._file(trainer).open("a", encoding="utf-8") as handle:
            for record in prediction:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
