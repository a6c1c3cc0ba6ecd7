"""Every YAML in the repository parses against the real CLI, and every experiment trains for a couple of
steps with tiny overrides, so no recipe can rot. The paper's stages run as a chain: each one starts from
the previous stage's checkpoint (`model.init.checkpoint`) exactly as its file says, inside a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from h2ovl.training.compose import ConfigError, compose, compose_to_yaml
from h2ovl.training.lightning_cli import H2OVLCLI, ParseOnlyCLI

ROOT = Path(__file__).resolve().parents[1]
# Sweep specs (sweeps/, ablations/) are not trainer configs: tests/test_sweeps.py parses their trials' configs.
ALL_YAML = sorted(p for top in ("configs", "experiments") for p in (ROOT / top).rglob("*.yaml"))
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").rglob("*.yaml") if p.name != "base.yaml")
# Where a fragment belongs in a full config, by its folder under configs/.
SECTIONS = {
    "model": "model",
    "data": "data",
    "trainer": "trainer",
    "logger": "trainer.logger",
    "preprocessor": "model.preprocessor",
}


def _composed(path: Path, tmp_path: Path) -> str:
    """A full config: an experiment as composed, a fragment placed under its section."""
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "configs":
        wrapper = tmp_path / "wrapper.yaml"
        wrapper.write_text(yaml.safe_dump({"extends": [{SECTIONS[relative.parts[1]]: str(path)}]}))
        path = wrapper
    return compose_to_yaml(path)


def test_there_is_something_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in ALL_YAML}
    assert "experiments/cpu/tiny.yaml" in names
    assert {f"experiments/paper/0.8b/{s}.yaml" for s in ("pretrain-1", "pretrain-2", "finetune")} <= names
    assert {f"experiments/paper/2b/{s}.yaml" for s in ("pretrain", "finetune")} <= names


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_yaml_parses(path: Path, tmp_path: Path):
    cli = ParseOnlyCLI(args=["--config", _composed(path, tmp_path)], run=False)  # run=False: no subcommand
    assert cli.config.model.preset


def _tiny_overrides(path: Path, synthetic: Path, root: Path, tracking_uri: str) -> list[str]:
    preset = "tiny-mistral" if "2b" in path.parts else "tiny"
    return [
        # The real recipes name pretrained parts on the hub; the tiny presets build from config.
        "--model.preset",
        preset,
        "--model.init.vision_weights",
        "null",
        "--model.init.llm",
        "null",
        "--model.init.tokenizer",
        "null",
        "--data.train",
        "null",
        "--data.val",
        "null",
        "--data.synthetic.out",
        str(synthetic),
        "--data.synthetic.n",
        "30",
        "--data.synthetic.max_side",
        "256",
        "--data.batching.batch_size",
        "2",
        "--data.batching.global_batch_size",
        "4",
        "--data.num_workers",
        "0",
        "--data.batching.max_length",
        "512",
        "--data.val_limit",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
        "--trainer.strategy",
        "auto",
        "--trainer.precision",
        "32-true",
        "--trainer.max_steps",
        "2",
        "--trainer.max_epochs",
        "null",
        "--trainer.val_check_interval",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.default_root_dir",
        str(root),
        "--trainer.logger.init_args.tracking_uri",
        tracking_uri,
        "--trainer.logger.init_args.log_model",
        "false",
        "--throughput.window_size",
        "2",
    ]


def _fit(path: Path, tmp: Path, run_root: Path, *extra: str) -> H2OVLCLI:
    args = [
        "fit",
        "--config",
        compose_to_yaml(path),
        *_tiny_overrides(path, tmp / "synthetic", run_root, f"sqlite:///{tmp / 'mlflow.db'}"),
        *extra,
    ]
    return H2OVLCLI(args=args)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_cpu_experiment_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str):
    monkeypatch.chdir(tmp_path)
    cli = _fit(ROOT / "experiments/cpu/tiny.yaml", tmp_path, tmp_path / "runs/cpu", "--trainer.precision", precision)
    trainer = cli.trainer
    assert trainer.global_step == 2 and trainer.accumulate_grad_batches == 2  # 4 = 2 per batch x 1 device x 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert (tmp_path / "runs/cpu/checkpoints/last.ckpt").is_file()


def test_paper_stages_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The three 0.8B stages and the 2B pretrain -> finetune -> finetune-2 chain, each from its predecessor's
    `last.ckpt` as the recipe names it (outputs/runs/<stage>/checkpoints/last.ckpt, relative to the cwd)."""
    monkeypatch.chdir(tmp_path)
    chains = {
        "0.8b": ["pretrain-1", "pretrain-2", "finetune"],
        "2b": ["pretrain", "finetune", "finetune-2"],
    }
    for model, stages in chains.items():
        previous = None
        for stage in stages:
            path = ROOT / f"experiments/paper/{model}/{stage}.yaml"
            recipe = compose(path)
            root = Path(recipe["trainer"]["default_root_dir"])
            if previous is not None:
                assert recipe["model"]["init"]["checkpoint"] == str(previous)
            else:
                assert recipe["model"]["init"].get("checkpoint") is None
            cli = _fit(path, tmp_path, tmp_path / root)
            report = cli.model.model.parameter_report()
            trainable = recipe["model"]["trainable"]
            for part in ("vision", "projector", "llm"):
                assert (report[part]["trainable"] > 0) == trainable[part], (stage, part)
            assert cli.trainer.global_step == 2
            previous = root / "checkpoints/last.ckpt"
            assert previous.is_file()


def test_paper_recipes_name_the_parts_the_paper_starts_from_and_a_validation_slice():
    first = {"0.8b/pretrain-1": "h2oai/h2o-danube3-500m-base", "2b/pretrain": "h2oai/h2o-danube2-1.8b-base"}
    for path in EXPERIMENTS:
        if "paper" not in path.parts:
            continue
        stage = path.relative_to(ROOT / "experiments/paper").with_suffix("").as_posix()
        recipe = compose(path)
        init = recipe["model"]["init"]
        assert init["tokenizer"] == first.get(stage, init["tokenizer"]) and init["tokenizer"].startswith(
            "h2oai/h2o-danube"
        )
        if stage in first:
            assert init["llm"] == first[stage] and init["vision_weights"] == "ogvl_dist" and not init.get("checkpoint")
        else:  # later stages start from their predecessor's weights, not the hub's
            assert init.get("llm") is None and init.get("vision_weights") is None and init["checkpoint"]
        assert recipe["data"]["val"], stage  # val/loss exists, so the paper sweep's table fills


def test_compose_extends_overrides_and_interpolates(tmp_path: Path):
    (tmp_path / "frag").mkdir()
    (tmp_path / "frag/model.yaml").write_text(
        "preset: tiny\noptim: {lr: 0.5, warmup_ratio: 0.1}\ntrainable: {vision: true}\n"
    )
    (tmp_path / "base.yaml").write_text("trainer: {max_steps: 3}\ndata: {batch_size: 2}\n")
    (tmp_path / "exp.yaml").write_text(
        "extends:\n  - base.yaml\n  - model: frag/model.yaml\nmodel:\n  optim: {lr: 0.25}\ntrainer:\n  max_steps: ${data.batch_size}\n"
    )
    config = compose(tmp_path / "exp.yaml")
    # a group set in two files merges key by key
    assert config["model"] == {
        "preset": "tiny",
        "optim": {"lr": 0.25, "warmup_ratio": 0.1},
        "trainable": {"vision": True},
    }
    assert config["trainer"]["max_steps"] == 2


def test_preprocessors_go_by_the_short_names_the_docs_use(tmp_path: Path):
    from h2ovl.training.compose import expand_config_args

    (tmp_path / "short.yaml").write_text("model:\n  preprocessor: msac\n")
    assert compose(tmp_path / "short.yaml")["model"]["preprocessor"] == "h2ovl.preprocessing.MSAC"
    (tmp_path / "mapped.yaml").write_text("model:\n  preprocessor: {class_path: dynamic, init_args: {max_tiles: 4}}\n")
    assert compose(tmp_path / "mapped.yaml")["model"]["preprocessor"] == {
        "class_path": "h2ovl.preprocessing.DynamicResolution",
        "init_args": {"max_tiles": 4},
    }
    assert expand_config_args(["--model.preprocessor", "Fixed", "--model.preprocessor.class_path=msac"]) == [
        "--model.preprocessor",
        "h2ovl.preprocessing.FixedResize",
        "--model.preprocessor.class_path=h2ovl.preprocessing.MSAC",
    ]
    assert expand_config_args(["--model.preprocessor", "MixedViews"])[1] == "MixedViews"  # a class name stays
    (tmp_path / "typo.yaml").write_text("model:\n  preprocessor: dynamo\n")
    with pytest.raises(
        ConfigError, match=r"typo\.yaml: model\.preprocessor 'dynamo' is not a preprocessor: name one of "
    ):
        compose(tmp_path / "typo.yaml")


def test_compose_errors_name_the_file(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("extends: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("extends: [a.yaml]\n")
    with pytest.raises(ConfigError, match="extends itself"):
        compose(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: [missing.yaml]\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml does not exist \(named in .*c\.yaml\)"):
        compose(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("trainer: {max_steps: ${nowhere}}\n")
    with pytest.raises(ConfigError, match="d.yaml"):
        compose(tmp_path / "d.yaml")
