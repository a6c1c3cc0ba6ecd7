"""The paper's recipes at their real shapes, from pretrained parts in their real formats, on CPU.

The test writes the parts the recipes start from as their publishers ship them: a timm state dict of
`vit_intern300m_patch14_448` (InternViT-300M-448px), transformers directories with Danube3-500M's
(Llama) and Danube2-1.8B's (Mistral) shapes, and a 32,000-piece base tokenizer without H2OVL's tokens
(random weights: only shapes and formats matter here). Every 0.8B stage and the 2B pre-training run one
optimizer step through the real CLI on one 448-px tile per sample. The 2B fine-tune's AdamW state
(~32 GiB in fp32) does not fit this machine: it is proved as far as it fits, the model built from the
parts, one forward and backward through every part, and the optimizer groups checked by name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from training_runs import ROOT, h2ovl_fit, mlflow_runs, write_config

sys.path.insert(0, str(ROOT / "benchmarks"))
from train_gpu import stand_in_tokenizer, synthetic_batch  # noqa: E402  (the benchmark's stand-in tokenizer)

pytestmark = pytest.mark.slow

STAGES = {"0.8b": ["pretrain-1", "pretrain-2", "finetune"], "2b": ["pretrain"]}
TRAINS = {
    "pretrain-1": {"vision": False, "projector": True, "llm": False},
    "pretrain-2": {"vision": False, "projector": True, "llm": True},
    "finetune": {"vision": True, "projector": True, "llm": True},
    "pretrain": {"vision": True, "projector": True, "llm": False},
}


def _write_parts(folder: Path, model: str) -> dict[str, str]:
    """InternViT weights, the LLM directory and the base tokenizer, as published (random values)."""
    import timm
    from transformers import AutoConfig, AutoModelForCausalLM

    from h2ovl.model.config import preset

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    vit = timm.create_model("vit_intern300m_patch14_448", pretrained=False, num_classes=0, global_pool="")
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(folder / "internvit.safetensors"))
    del vit
    llm_config = dict(preset(f"h2ovl-{model}").llm)
    llm_config["vocab_size"] = 32000  # Danube's own vocabulary; H2OVL's tokens come on top
    llm = AutoModelForCausalLM.from_config(AutoConfig.for_model(llm_config.pop("model_type"), **llm_config))
    llm.save_pretrained(str(folder / "llm"))
    del llm
    return {
        "vision_weights": str(folder / "internvit.safetensors"),
        "llm": str(folder / "llm"),
        "tokenizer": stand_in_tokenizer(folder / "tokenizer", with_h2ovl_tokens=False),
    }


def _stage_config(tmp: Path, model: str, stage: str, parts: dict[str, str]) -> Path:
    config = {
        "extends": [str(ROOT / f"experiments/paper/{model}/{stage}.yaml")],
        "model": {
            "init": {**parts, "checkpoint": None},
            "preprocessor": {"class_path": "h2ovl.preprocessing.FixedResize", "init_args": {"tile_size": 448}},
        },
        "data": {
            "train": None,
            "val": None,
            "synthetic": {"out": str(tmp / "synthetic"), "n": 24, "max_side": 256},
            "batching": {"batch_size": 1, "global_batch_size": 1, "max_length": 512},
            "num_workers": 0,
        },
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "strategy": "auto",
            "precision": "32-true",
            "max_steps": 1,
            "log_every_n_steps": 1,
            "max_epochs": None,
            "limit_val_batches": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(tmp / "runs" / f"{model}-{stage}"),
            "logger": {
                "init_args": {
                    "experiment_name": f"{model}-{stage}",
                    "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
                    "log_model": False,
                }
            },
        },
        "checkpoint": {"save_last": False},
        "throughput": {"window_size": 2},
    }
    return write_config(tmp / f"{model}-{stage}.yaml", config)


def test_paper_recipes_start_from_pretrained_parts_at_real_shape(tmp_path: Path):
    """One test, so that the parts are written once and nothing else at this size runs beside it."""
    from h2ovl.training import H2OVLModule, Initialization, Trainable
    from h2ovl.training.optim import parameter_groups

    for model, stages in STAGES.items():
        parts = _write_parts(tmp_path / "parts" / model, model)
        for stage in stages:
            result = h2ovl_fit(_stage_config(tmp_path, model, stage, parts), timeout=1200)
            assert "10 embedding rows added for the H2OVL tokens" in result.stderr, stage  # the ten, never the markers
            (run,) = mlflow_runs(tmp_path, f"{model}-{stage}")
            params = run.data.params
            for part, trains in TRAINS[stage].items():
                assert (int(params[f"params/{part}/trainable"]) > 0) == trains, (stage, part)
            assert torch.isfinite(torch.tensor(run.data.metrics["train/loss"])), stage

    # The 2B fine-tune, as far as this machine holds it.
    module = H2OVLModule(
        preset="h2ovl-2b", trainable=Trainable(vision=True, projector=True, llm=True), init=Initialization(**parts)
    )
    model = module.model
    # The parts' weights, as written (the LLM's rows past Danube's 32,000 are the added tokens').
    vit_file = load_file(parts["vision_weights"])
    assert torch.equal(model.vision.vit.blocks[0].attn.qkv.weight, vit_file["blocks.0.attn.qkv.weight"])
    del vit_file
    embeddings = model.llm.get_input_embeddings().weight
    assert (
        embeddings.shape == (32010, 2560) and len(module.tokenizer) == 32010
    )  # the released vocab_size: Danube + the ten
    groups = {g["name"]: g for g in parameter_groups(model, 4e-5, 0.03)}
    assert set(groups) == {
        f"{part}/{kind}" for part in ("vision", "projector", "llm") for kind in ("decay", "no_decay")
    }
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups["llm/decay"]["params"]}
    assert "llm.model.layers.0.self_attn.q_proj.weight" in decayed and "llm.lm_head.weight" in decayed
    assert not any(n.endswith(("norm.weight", ".bias")) for n in decayed)
    assert {names[id(p)] for p in groups["vision/no_decay"]["params"]} >= {
        "vision.vit.blocks.0.ls1.gamma",
        "vision.vit.cls_token",
    }

    # Forward and backward through every part, all of them trainable. The gradients asked for are one
    # weight per part: all of them (8 GiB more in fp32) would not fit beside the weights, and bf16 is
    # ten times slower on a CPU without bf16 units; the backward pass itself is the same either way.
    model.train()
    batch = synthetic_batch(
        module.tokenizer, 1, tiles=1, tile_size=448, tokens_per_tile=model.tokens_per_tile, text=24, answer=8
    )
    loss_sum, weight = module._weighted_loss(batch)
    probes = [
        model.vision.vit.blocks[0].attn.qkv.weight,
        model.projector[1].weight,
        model.llm.model.layers[0].self_attn.q_proj.weight,
        model.llm.lm_head.weight,
    ]
    for grad in torch.autograd.grad(loss_sum / weight, probes):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
