"""The hand-written FLOP count (for MFU) against `measure_flops`'s trace of real forward and backward
passes on real batches, for each freeze spec of the paper's stages."""

from __future__ import annotations

import pytest
import torch
from lightning.fabric.utilities.throughput import measure_flops

from h2ovl.data.datamodule import H2OVLDataModule, SyntheticData
from h2ovl.data.packing import model_inputs
from h2ovl.model.h2ovl import H2OVL
from h2ovl.training.flops import forward_flops, training_flops

STAGES = {
    "projector only": dict(vision=False, projector=True, llm=False),
    "projector + llm": dict(vision=False, projector=True, llm=True),
    "vision + projector": dict(vision=True, projector=True, llm=False),
    "all": dict(vision=True, projector=True, llm=True),
}


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    torch.manual_seed(0)
    model, tokenizer = H2OVL.from_preset("tiny")
    synthetic = SyntheticData(out=str(tmp_path_factory.mktemp("synthetic")), n=24, max_side=256)
    padded = H2OVLDataModule(synthetic=synthetic, batch_size=3).bind(tokenizer, model.build_preprocessor(), model.tokens_per_tile)
    packed = H2OVLDataModule(synthetic=synthetic, batch_size=1, pack_tokens=768).bind(tokenizer, model.build_preprocessor(), model.tokens_per_tile)
    return model, [next(iter(padded.train_stream())), next(iter(packed.train_stream()))]


def _shape(batch: dict) -> tuple[int, int, int]:
    rows, seq_len = batch["input_ids"].shape
    return int(batch["tiles_per_sample"].sum()), rows, seq_len


@pytest.mark.parametrize("stage", STAGES)
def test_training_flops_match_the_traced_count(batches, stage):
    model, examples = batches
    model.set_trainable(**STAGES[stage])
    for batch in examples:
        traced = measure_flops(model, lambda: model(**model_inputs(batch)).loss, loss_fn=lambda loss: loss)
        counted = training_flops(model, *_shape(batch))
        assert counted == pytest.approx(traced, rel=0.03), stage


def test_forward_flops_match_the_traced_count(batches):
    model, examples = batches
    for batch in examples:
        with torch.no_grad():
            traced = measure_flops(model, lambda: model(**model_inputs(batch)).loss)
        assert sum(sum(part) for part in forward_flops(model, *_shape(batch)).values()) == pytest.approx(traced, rel=0.01)
