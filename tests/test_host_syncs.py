"""No host sync in the training step: a micro-batch inside an accumulation window runs forward, loss and
backward without one host-syncing call from our code (the device never waits on the host between
micro-batches). Counted on CPU by `support.host_syncs`; what transformers itself still reads is named."""

from __future__ import annotations

import sys

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from h2ovl.data.packing import collate_rows
from h2ovl.training import H2OVLModule, Optimization

from support.host_syncs import HostSyncs
from training_runs import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from train_gpu import synthetic_sample  # noqa: E402  (the benchmark's samples: prompt, image, answer)


class CountInsideTheWindow(L.Callback):
    """Counts host syncs over one whole micro-batch that does not end its accumulation window."""

    def __init__(self, batch_idx: int) -> None:
        self.batch_idx, self.syncs = batch_idx, HostSyncs()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.batch_idx:
            self.syncs.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.batch_idx:
            self.syncs.__exit__(None, None, None)


@pytest.mark.parametrize("layout", ["padded", "packed"])
@pytest.mark.parametrize("reduction", ["token", "sample"])
def test_a_micro_batch_inside_an_accumulation_window_reads_nothing_back_from_the_device(layout, reduction):
    module = H2OVLModule(preset="tiny", optim=Optimization(loss_reduction=reduction))
    samples = [
        synthetic_sample(module.tokenizer, str(i), tiles, 64, module.model.tokens_per_tile, 24 + 8 * i, 8)
        for i, tiles in enumerate((1, 3, 2))
    ]
    rows = [[s] for s in samples] if layout == "padded" else [samples]
    batch = collate_rows(rows, pad_token_id=0, packed=layout == "packed")
    probe = CountInsideTheWindow(batch_idx=2)  # the first micro-batch of the second optimizer step
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        accumulate_grad_batches=2,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    trainer.fit(module, DataLoader([batch] * 4, batch_size=None, collate_fn=lambda batch: batch))
    assert probe.syncs.calls, "nothing counted: the probe did not run"  # transformers' own reads (below)
    assert probe.syncs.ours() == {}
    # transformers reads back whether a padded row has padding, and whether a packed row holds several
    # sequences, once per forward (docs/training.md).
    assert all("transformers" in where for where in probe.syncs.calls)


def test_the_counter_sees_what_a_training_step_must_not_do():
    with HostSyncs() as syncs:
        x = torch.arange(4.0)
        int(x.sum()), bool((x > 1).any()), x[x > 1], torch.bincount(x.long())
    assert sum(syncs.ours().values()) == 0  # this file is not the package
    assert sum(syncs.calls.values()) == 4
