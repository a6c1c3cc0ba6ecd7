"""`Processor`: what the data side needs of a model, and nothing else.

The model owns its tokenizer, its preprocessor (the ablation axis) and its visual tokens per tile (pixel
shuffle on or off); the data module turns records into samples with exactly those. The model builds one
(`H2OVLModule.processor`) and `h2ovl fit` hands it to the data module, so the data side never reaches into
the trainer or the model for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from h2ovl.preprocessing import ImagePreprocessor


@dataclass(frozen=True)
class Processor:
    tokenizer: Any
    """A tokenizer holding the H2OVL tokens."""
    preprocessor: ImagePreprocessor
    tokens_per_tile: int

    @property
    def pad_token_id(self) -> int:
        tokenizer = self.tokenizer
        return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
