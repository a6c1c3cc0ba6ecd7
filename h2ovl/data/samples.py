"""One record -> one model-ready sample: images tiled by the configured preprocessor, text encoded.

Preprocessing happens here, at training time (never baked into the data), so the preprocessor stays
an ablation axis over the same files.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from h2ovl.data.records import BadSample
from h2ovl.data.sources import RecordSource
from h2ovl.data.template import ConversationEncoder
from h2ovl.preprocessing import ImageLoadError, ImagePreprocessor

#: InternVL's training augmentation re-encodes tiles as JPEG at one of these qualities.
JPEG_QUALITIES = (75, 80, 85, 90, 95, 100)


@dataclass(frozen=True)
class Sample:
    input_ids: torch.Tensor
    """int64 [length]"""
    labels: torch.Tensor
    """int64 [length], -100 where unsupervised"""
    tiles: torch.Tensor
    """uint8 [n_tiles, 3, T, T], all images of the sample in order"""
    dataset: str
    id: str
    reference: dict = field(default_factory=dict, compare=False)
    """The record's first answer and evaluation fields (`Record.reference`)."""

    @property
    def length(self) -> int:
        return self.input_ids.shape[0]

    @property
    def n_tiles(self) -> int:
        return self.tiles.shape[0]


def jpeg_degrade(tiles: torch.Tensor, rng: random.Random) -> torch.Tensor:
    out = torch.empty_like(tiles)
    for i, tile in enumerate(tiles):
        buffer = io.BytesIO()
        Image.fromarray(tile.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=rng.choice(JPEG_QUALITIES))
        decoded = Image.open(buffer).convert("RGB")
        out[i] = torch.from_numpy(np.asarray(decoded).copy()).permute(2, 0, 1)
    return out


class SampleBuilder:
    """Builds `Sample`s from the records of a mixture's sources.

    Args:
        sources: one `RecordSource` per dataset, in mixture order.
        preprocessor: image -> tiles (the ablation axis).
        encoder: template, labels and truncation.
        tokens_per_tile: the model's visual tokens per tile (pixel shuffle on or off).
        seed: seeds augmentation, so a sample rebuilt after a resume is the same sample.
        split_budget: multi-image samples share the tile budget (InternVL's training rule); False gives
            each image the whole budget, as the released models' inference code does.
    """

    def __init__(
        self,
        sources: list[RecordSource],
        preprocessor: ImagePreprocessor,
        encoder: ConversationEncoder,
        tokens_per_tile: int,
        seed: int = 0,
        split_budget: bool = True,
    ) -> None:
        self.sources = sources
        self.preprocessor = preprocessor
        self.encoder = encoder
        self.tokens_per_tile = tokens_per_tile
        self.seed = seed
        self.split_budget = split_budget

    def build(self, dataset_index: int, record_index: int, epoch: int = 0) -> Sample:
        """Raises `BadSample` for anything wrong with the record or its images."""
        source = self.sources[dataset_index]
        spec = source.spec
        record, images = source.load(record_index)
        try:
            tiled = self.preprocessor.process_sample(
                images, max_tiles=spec.max_dynamic_patch, split_budget=self.split_budget
            )
        except (ImageLoadError, OSError) as error:
            raise BadSample("image_error", record.where, str(error)) from None
        encoded = self.encoder.encode(
            record.turns, [t.n_tokens(self.tokens_per_tile) for t in tiled], record.where, record.system
        )
        tiled = tiled[: encoded.images_kept]
        size = self.preprocessor.tile_size
        tiles = torch.cat([t.tiles for t in tiled]) if tiled else torch.empty(0, 3, size, size, dtype=torch.uint8)
        if spec.data_augment and tiles.shape[0]:
            tiles = jpeg_degrade(tiles, random.Random(f"{self.seed}/{spec.name}/{record_index}/{epoch}"))
        return Sample(
            input_ids=torch.tensor(encoded.input_ids, dtype=torch.long),
            labels=torch.tensor(encoded.labels, dtype=torch.long),
            tiles=tiles,
            dataset=spec.name,
            id=record.id,
            reference=record.reference,
        )
