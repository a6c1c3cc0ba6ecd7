"""Shared fixtures: small images written to a temporary folder by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB pixels: any mistake in tile order or cropping changes them."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def write_image(tmp_path: Path):
    def write(image: Image.Image, name: str, **save_args) -> Path:
        path = tmp_path / name
        image.save(path, **save_args)
        return path

    return write


@pytest.fixture(scope="session")
def tiny():
    """The tiny preset's (model, tokenizer, preprocessor), built once per test session."""
    import torch

    from h2ovl.model.h2ovl import H2OVL

    torch.manual_seed(0)
    model, tokenizer = H2OVL.from_preset("tiny")
    return model.eval(), tokenizer, model.build_preprocessor()


def write_jsonl(path: Path, records: list) -> Path:
    """Records as jsonl; a str entry is written verbatim (to plant malformed lines)."""
    import json

    with path.open("w", encoding="utf-8") as file:
        for record in records:
            file.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


def conversation(question: str, answer: str, image=None, id: str = "r") -> dict:
    record = {"id": id, "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
    if image is not None:
        record["image"] = image
    return record
