"""The hand-written FLOP count (for MFU) against `measure_flops`'s trace of real forward and backward
passes on real batches, for each freeze spec of the paper's stages.

Traced on the math attention path: its matmuls are the attention FLOPs the count defines, whatever
fused kernels a torch release has (and whether its counter knows them: some count the CPU's fused
SDPA as zero)."""

from __future__ import annotations

import pytest
import torch
from lightning.fabric.utilities.throughput import measure_flops
from torch.nn.attention import SDPBackend, sdpa_kernel

from h2ovl.data.batching import Batching
from h2ovl.data.datamodule import H2OVLDataModule, SyntheticData
from h2ovl.data.packing import model_inputs
from h2ovl.data.processor import Processor
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
    padded = H2OVLDataModule(synthetic=synthetic, batching=Batching(batch_size=3)).bind(
        Processor(tokenizer, model.build_preprocessor(), model.tokens_per_tile)
    )
    packed = H2OVLDataModule(synthetic=synthetic, batching=Batching(batch_size=1, pack_tokens=768)).bind(
        Processor(tokenizer, model.build_preprocessor(), model.tokens_per_tile)
    )
    return model, [next(iter(padded.train_stream())), next(iter(packed.train_stream()))]


#: Some transformers releases compute the rotary angles as a (tiny) matmul, which the trace counts and the
#: model-FLOP count does not: 6,144 FLOPs in 185M here.
ROTARY_TOLERANCE = 1e-4


def traced_flops(model: H2OVL, batch: dict, backward: bool) -> int:
    def forward() -> torch.Tensor:
        return model(**model_inputs(batch)).loss

    with sdpa_kernel(SDPBackend.MATH):
        if backward:
            return measure_flops(model, forward, loss_fn=lambda loss: loss)
        with torch.no_grad():
            return measure_flops(model, forward)


def _shape(batch: dict) -> tuple[int, int, int]:
    rows, seq_len = batch["input_ids"].shape
    return int(batch["tiles_per_sample"].sum()), rows, seq_len


@pytest.mark.parametrize("stage", STAGES)
def test_training_flops_match_the_traced_count(batches, stage):
    model, examples = batches
    model.set_trainable(**STAGES[stage])
    for batch in examples:
        counted = training_flops(model, *_shape(batch))
        assert counted == pytest.approx(traced_flops(model, batch, backward=True), rel=ROTARY_TOLERANCE), stage


def test_forward_flops_match_the_traced_count(batches):
    model, examples = batches
    for batch in examples:
        counted = sum(sum(part) for part in forward_flops(model, *_shape(batch)).values())
        assert counted == pytest.approx(traced_flops(model, batch, backward=False), rel=ROTARY_TOLERANCE)


def test_mfu_uses_the_dense_peak(monkeypatch):
    """The H200 (named plainly "NVIDIA H200") gets the H100 SXM's dense rates, not Lightning's sparse
    figures or nothing; other devices keep Lightning's table."""
    from h2ovl.training.flops import dense_peak_flops

    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert dense_peak_flops(cuda, torch.bfloat16) == 989.4e12
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    assert dense_peak_flops(cuda, torch.float32) == 66.9e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert dense_peak_flops(cuda, torch.bfloat16) == 989.4e12
