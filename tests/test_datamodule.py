"""The data module under a real Lightning Trainer: epochs end at `steps_per_epoch`, the position in the
data is saved in checkpoints and a resumed fit consumes exactly what an uninterrupted one would."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from torch import nn

from h2ovl.data.batching import Batching
from h2ovl.data.datamodule import H2OVLDataModule, SyntheticData
from h2ovl.data.processor import Processor
from h2ovl.data.skip_report import BadSampleReport
from tests.test_stream import BAD, make_mixture


class Recorder(L.LightningModule):
    """Stands in for the training module: records the ids of the batches it sees."""

    def __init__(self, tiny) -> None:
        super().__init__()
        model, self.tokenizer, self.preprocessor = tiny
        self.tokens_per_tile = model.tokens_per_tile
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[str] = []

    @property
    def model(self):
        return self  # the data module reads `module.model.tokens_per_tile`

    def training_step(self, batch, batch_idx):
        self.seen += batch["ids"]
        return (self.weight - 1).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tiny, datamodule, tmp_path, max_steps, ckpt_path=None, callbacks=()):
    module = Recorder(tiny)
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    if datamodule.processor is None:
        datamodule.bind(Processor(tiny[1], tiny[2], tiny[0].tokens_per_tile))
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return module, trainer


def datamodule(meta, **kwargs):
    return H2OVLDataModule(
        train=str(meta), batching=Batching(batch_size=2, pack_tokens=384), **{"steps_per_epoch": 3, "seed": 1, **kwargs}
    )


def test_fit_resume_consumes_exactly_the_uninterrupted_samples(tmp_path, tiny):
    (tmp_path / "data").mkdir()
    meta = make_mixture(tmp_path / "data", bad=BAD)
    full, trainer = fit(tiny, datamodule(meta), tmp_path / "full", max_steps=8)
    assert trainer.num_training_batches == 3 and trainer.global_step == 8  # crosses two epoch ends

    first, trainer = fit(tiny, datamodule(meta), tmp_path / "part", max_steps=4)
    checkpoint = trainer.checkpoint_callback.best_model_path
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["H2OVLDataModule"]["per_rank"][0]["stream"]["batches"] == 4
    second, _ = fit(tiny, datamodule(meta), tmp_path / "part", max_steps=8, ckpt_path=checkpoint)
    assert first.seen + second.seen == full.seen


def test_bad_samples_are_reported_each_epoch(tmp_path, tiny, caplog):
    (tmp_path / "data").mkdir()
    meta = make_mixture(tmp_path / "data", bad=BAD)
    with caplog.at_level(logging.WARNING):
        fit(tiny, datamodule(meta, steps_per_epoch=12), tmp_path, max_steps=24, callbacks=[BadSampleReport()])
    reports = [r.getMessage() for r in caplog.records if "bad samples" in r.getMessage()]
    assert reports and "ocr/malformed_json" in reports[0] and "ocr/image_error" in reports[0]


def test_synthetic_data_is_written_on_first_use(tmp_path, tiny):
    synthetic = SyntheticData(out=str(tmp_path / "synthetic"), n=12, seed=0, tasks=["text", "text_only"])
    dm = H2OVLDataModule(synthetic=synthetic, batching=Batching(batch_size=2)).bind(
        Processor(tiny[1], tiny[2], tiny[0].tokens_per_tile)
    )
    batch = next(iter(dm.train_dataloader()))
    assert (synthetic.folder / "meta.json").is_file() and len(batch["ids"]) == 2
    assert synthetic.folder.name == "n12-seed0-text+text_only-test0.1-side768-v4"
    val = next(iter(dm.val_dataloader()))
    assert all("-val-" in i for i in val["ids"]) and val["skipped"] == {}


def test_synthetic_data_left_half_written_by_a_killed_writer_is_removed_by_the_next(tmp_path):
    synthetic = SyntheticData(out=str(tmp_path / "synthetic"), n=6, seed=0, tasks=["digits_square"])
    folder = synthetic.folder
    dead = folder.with_name(f".{folder.name}.partial-4194302")  # above the default pid_max: no such process
    alive = folder.with_name(f".{folder.name}.partial-1")  # pid 1 is always alive: still writing
    other = folder.with_name(".n9-other-data.partial-4194302")  # another dataset's: not this writer's to judge
    for partial in (dead, alive, other):
        (partial / "images").mkdir(parents=True)
    assert (synthetic.ensure()["train"]).is_file()
    assert not dead.exists() and alive.is_dir() and other.is_dir()
    assert sorted(p.name for p in folder.parent.iterdir()) == sorted([folder.name, alive.name, other.name])


def test_each_stage_reads_its_own_split_and_all_of_it(tmp_path, tiny):
    synthetic = SyntheticData(out=str(tmp_path / "synthetic"), n=60, seed=0, tasks=["text", "text_only"])
    dm = H2OVLDataModule(synthetic=synthetic, batching=Batching(val_batch_size=4), val_limit=3).bind(
        Processor(tiny[1], tiny[2], tiny[0].tokens_per_tile)
    )
    ids = {
        stage: [i for batch in getattr(dm, f"{stage}_dataloader")() for i in batch["ids"]]
        for stage in ("val", "test", "predict")
    }
    assert len(ids["val"]) == 3 and all("-val-" in i for i in ids["val"])  # limited on purpose
    assert len(ids["test"]) == 6 and all("-test-" in i for i in ids["test"])  # 3 per task, all of them
    assert ids["predict"] == ids["test"]
    explicit = H2OVLDataModule(train="x", test=None).bind(Processor(tiny[1], tiny[2], tiny[0].tokens_per_tile))
    with pytest.raises(ValueError, match="set data.test"):
        explicit.test_dataloader()


def test_changed_synthetic_settings_make_new_data_never_reuse_old(tmp_path, tiny):
    def ids(**fields):
        synthetic = SyntheticData(out=str(tmp_path / "synthetic"), seed=0, tasks=["text"], **fields)
        metas = synthetic.ensure()
        return synthetic.folder, sum(1 for _ in open(str(metas["train"]).replace("meta.json", "text_train.jsonl")))

    small, n_small = ids(n=10)
    large, n_large = ids(n=20)
    other_side, _ = ids(n=10, max_side=256)
    assert len({small, large, other_side}) == 3 and n_large > n_small
    assert ids(n=10) == (small, n_small)  # the same settings reuse their folder
