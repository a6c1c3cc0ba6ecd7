"""Weight averaging through Lightning's callback, as the CPU demo's fine-tunes use it: the checkpoint holds
the average as its weights (what validation scored, what `model.init.checkpoint`, `evaluate` and `export` read) and
the raw weights beside them, a resume continues both, and every file still loads with `weights_only=True`."""

from __future__ import annotations

from pathlib import Path

import torch

from h2ovl.training.module import H2OVLModule
from h2ovl.training.settings import Initialization

from training_runs import h2ovl_fit, last_checkpoint, tiny_run_config, write_config

EMA = {"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging", "init_args": {"decay": 0.5}}


def test_an_averaged_run_saves_the_average_resumes_and_starts_the_next_stage_from_it(tmp_path: Path):
    config = tiny_run_config(tmp_path, "ema", max_steps=4)
    config["trainer"]["callbacks"] = [EMA]
    path = write_config(tmp_path / "ema.yaml", config)
    h2ovl_fit(path)
    saved = last_checkpoint(tmp_path, "ema")
    average, raw = saved["state_dict"], saved["current_model_state"]
    assert average.keys() == raw.keys()
    assert any(not torch.equal(average[k], raw[k]) for k in average)  # the average is not the last step

    h2ovl_fit(path, "--ckpt_path", "last", "--trainer.max_steps", "6")  # restores both, weights_only
    resumed = last_checkpoint(tmp_path, "ema")
    assert resumed["global_step"] == 6 and int(resumed["averaging_state"]["n_averaged"]) == 6

    checkpoint = tmp_path / "runs/ema/checkpoints/last.ckpt"
    module = H2OVLModule(preset="tiny", init=Initialization(checkpoint=str(checkpoint)))
    for name, tensor in module.state_dict().items():
        if name in resumed["state_dict"]:
            assert torch.equal(tensor, resumed["state_dict"][name]), name  # the average, not the raw weights
