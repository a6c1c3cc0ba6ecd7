"""The training module: freeze specs, AdamW groups and per-part rates, the schedule, a real fit on
synthetic data (loss falls), and `model.init.checkpoint` (weights only, not a resume)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from h2ovl.data.batching import Batching
from h2ovl.data.datamodule import H2OVLDataModule, SyntheticData
from h2ovl.training import H2OVLModule, Initialization, Optimization, Trainable
from h2ovl.training.optim import parameter_groups, warmup_cosine


def test_freeze_spec_and_parameter_groups():
    module = H2OVLModule(
        trainable=Trainable(vision=False, projector=True, llm=False, vision_last_blocks=1),
        optim=Optimization(part_lr={"vision": 1e-5}),
    )
    report = module.model.parameter_report()
    assert report["llm"]["trainable"] == 0 and report["projector"]["frozen"] == 0
    assert 0 < report["vision"]["trainable"] < report["vision"]["frozen"]
    groups = parameter_groups(module.model, 1e-3, 0.05, {"vision": 1e-5})
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"vision/decay", "vision/no_decay", "projector/decay", "projector/no_decay"}
    assert by_name["vision/decay"]["lr"] == 1e-5 and by_name["projector/decay"]["lr"] == 1e-3
    assert by_name["projector/no_decay"]["weight_decay"] == 0.0 and by_name["projector/decay"]["weight_decay"] == 0.05
    assert all(p.ndim < 2 for p in by_name["projector/no_decay"]["params"])
    everything = parameter_groups(H2OVLModule(trainable=Trainable(vision=True)).model, 1e-3, 0.05)
    vision_no_decay = next(g for g in everything if g["name"] == "vision/no_decay")["params"]
    assert {p.shape for p in vision_no_decay} >= {(1, 1, 64), (1, 65, 64)}  # cls_token, pos_embed (3-D, still exempt)
    with pytest.raises(ValueError, match="unknown parts"):
        parameter_groups(module.model, 1e-3, 0.0, {"decoder": 1e-4})


def test_pixel_shuffle_switch_and_preprocessor_override():
    off = H2OVLModule(
        pixel_shuffle=False,
        preprocessor={"class_path": "h2ovl.preprocessing.FixedResize", "init_args": {"tile_size": 64}},
    )
    on = H2OVLModule()
    assert off.model.tokens_per_tile == 4 * on.model.tokens_per_tile
    assert type(off.preprocessor).__name__ == "FixedResize"


def test_the_vision_tower_owns_the_tile_size():
    """A preprocessor config without a tile size makes the tiles the model's ViT takes, and records none (a
    checkpoint of it loads into the model it belongs to); MixedViews passes the size to every choice."""
    msac = H2OVLModule(preset="tiny-mistral", preprocessor={"class_path": "h2ovl.preprocessing.MSAC"})
    assert msac.preprocessor.tile_size == msac.model.vision.tile_size == 64
    assert "tile_size" not in msac.hparams.preprocessor.get("init_args", {})
    assert msac.model.build_preprocessor().tile_size == 64
    mixed = H2OVLModule(
        preprocessor={
            "class_path": "h2ovl.preprocessing.MixedViews",
            "init_args": {"choices": [{"class_path": "h2ovl.preprocessing.FixedResize"}, {"class_path": "MSAC"}]},
        }
    )
    assert [choice.tile_size for choice in mixed.preprocessor.choices] == [64, 64]
    from h2ovl.preprocessing import MSAC

    assert MSAC().tile_size == 448  # alone: the released models' tiles
    assert MSAC(tile_size=32).for_tile_size(64).tile_size == 32  # a size a config set stays


def test_warmup_cosine_shape():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.5) and rates[1] == pytest.approx(1.0)
    assert rates == sorted(rates[:2]) + sorted(rates[2:], reverse=True)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_fit_on_synthetic_data_lowers_the_loss_and_init_from_loads_weights(tmp_path):
    torch.manual_seed(0)
    synthetic = SyntheticData(out=str(tmp_path / "synthetic"), n=48, tasks=["text", "text_only"])
    module = H2OVLModule(
        trainable=Trainable(vision=True, projector=True, llm=True), optim=Optimization(lr=3e-3, warmup_ratio=0.1)
    )
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(trainer.callback_metrics["train/loss"]))  # the optimizer step's mean loss

    data = H2OVLDataModule(synthetic=synthetic, batching=Batching(batch_size=4, pack_tokens=512), seed=0).bind(
        module.processor
    )
    trainer = L.Trainer(
        max_steps=12,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        callbacks=[Record()],
    )
    trainer.fit(module, datamodule=data)
    assert sum(losses[-3:]) < sum(losses[:3]) - 1.0
    assert "val/loss" in trainer.callback_metrics

    checkpoint = trainer.checkpoint_callback.best_model_path
    stage_two = H2OVLModule(init=Initialization(checkpoint=checkpoint))
    for (name, trained), (_, loaded) in zip(module.state_dict().items(), stage_two.state_dict().items()):
        assert torch.equal(trained, loaded), name
    assert stage_two.trainable == Trainable()  # the new stage's own freeze spec

    # pixel shuffle switched off: everything loads, the projector rewritten for the narrower input (exact
    # on a token whose 2x2 patches are equal), unless it is excluded, which starts it fresh
    unshuffled = H2OVLModule(pixel_shuffle=False, init=Initialization(checkpoint=checkpoint))
    trained = module.state_dict()
    assert all(
        torch.equal(trained[name], value)
        for name, value in unshuffled.state_dict().items()
        if "projector.0" not in name and "projector.1" not in name
    )
    patch = torch.randn(3, unshuffled.model.vision.width)
    with torch.no_grad():
        torch.testing.assert_close(
            unshuffled.model.projector(patch), module.model.projector(patch.repeat(1, 4)), rtol=1e-5, atol=1e-5
        )
    fresh = H2OVLModule(pixel_shuffle=False, init=Initialization(checkpoint=checkpoint, exclude=("model.projector",)))
    assert not torch.equal(fresh.model.projector[1].weight, unshuffled.model.projector[1].weight)


class _Planted:
    """Stands for any class a crafted checkpoint could name to run code while it is unpickled."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_init_from_reads_weights_as_data_and_refuses_anything_else(tmp_path, capsys):
    from h2ovl.training.weights import load_checkpoint_weights

    planted = tmp_path / "planted.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": _Planted()}, planted)
    with pytest.raises(ValueError, match="refusing to load a checkpoint that holds more than weights"):
        H2OVLModule(init=Initialization(checkpoint=str(planted)))
    assert "unpickled code ran" not in capsys.readouterr().out
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"trainable": Trainable()}}, plain)
    assert torch.equal(load_checkpoint_weights(plain)["w"], torch.ones(2))


def test_global_batch_counts_samples_padded_and_rows_packed():

    with pytest.raises(ValueError, match="give data.batching.global_batch_rows"):
        Batching(pack_tokens=512, global_batch_size=256)
    with pytest.raises(ValueError, match="without data.batching.pack_tokens, give data.batching.global_batch_size"):
        Batching(global_batch_rows=64)
    assert Batching(pack_tokens=512, global_batch_rows=64).global_batch == (64, "global_batch_rows")
