"""Released models as downloaded: a folder whose tokenizer is only a SentencePiece `tokenizer.model` (as the
H2OVL repositories ship it) and the same folder named by hub id from a filled cache, offline, evaluate
end to end; the vision encoder loads from an InternViT release (folder, hub id, or its safetensors);
exports stop at `<|end|>` in a plain `generate()` and carry the config fields vLLM's H2OVL reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from h2ovl.cli import main
from h2ovl.constants import END
from h2ovl.model.config import preset
from h2ovl.model.h2ovl import H2OVL
from h2ovl.model.vision import timm_to_internvit

from support.benchmark_files import write_vlmevalkit
from support.sentencepiece_tokenizer import write_sentencepiece_tokenizer

REMOTE_CODE = (
    "configuration_h2ovl_chat.py",
    "configuration_intern_vit.py",
    "conversation.py",
    "image_process.py",
    "modeling_intern_vit.py",
    "modelling_h2ovl_chat.py",
)


def write_release(folder: Path) -> Path:
    """A tiny model in the layout of the h2oai repositories: config.json with their top-level fields (remote-code
    `auto_map` included), model.safetensors, generation_config.json, the SentencePiece tokenizer files, the
    remote-code files (never run here) and no tokenizer.json."""
    vocab = write_sentencepiece_tokenizer(folder)
    config = preset("tiny")
    config.llm = {**config.llm, "vocab_size": vocab}
    from h2ovl.model.tokenizer import load_tokenizer

    torch.manual_seed(0)
    model = H2OVL.for_tokenizer(config, load_tokenizer(folder, add_missing=False))
    model.save_released(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw["auto_map"] = {
        "AutoConfig": "configuration_h2ovl_chat.H2OVLChatConfig",
        "AutoModel": "modelling_h2ovl_chat.H2OVLChatModel",
        "AutoModelForCausalLM": "modelling_h2ovl_chat.H2OVLChatModel",
    }
    raw["llm_config"].update(
        {
            "_name_or_path": "h2oai/h2o-danube3-500m-chat",
            "transformers_version": "4.44.0",
            "use_bfloat16": True,
            "bad_words_ids": None,
            "chunk_size_feed_forward": 0,
            "num_beams": 1,
            "top_k": 50,
        }
    )
    (folder / "config.json").write_text(json.dumps(raw, indent=2))
    for name in REMOTE_CODE:
        (folder / name).write_text("raise RuntimeError('remote code must never run')\n")
    assert not (folder / "tokenizer.json").exists()
    return folder


def fill_hub_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    commit = "0b9eab77bab0badab689a18a4118f3f2c97cff02"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_a_release_with_only_a_sentencepiece_tokenizer_evaluates_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    release = write_release(tmp_path / "h2ovl-mississippi-800m")
    data = write_vlmevalkit("ocrbench", tmp_path / "LMUData")
    assert (
        main(
            [
                "evaluate",
                "--released",
                str(release),
                "--data",
                str(data),
                "--protocol",
                "vlmevalkit",
                "--max-new-tokens",
                "4",
                "--out",
                str(tmp_path / "eval"),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["ocrbench/n"] == 3 and scores["skipped"] == 0


def test_a_release_named_by_hub_id_loads_from_the_cache_offline(tmp_path: Path):
    fill_hub_cache(tmp_path / "hub", "h2oai/h2ovl-mississippi-800m", write_release(tmp_path / "download"))
    data = write_vlmevalkit("docvqa", tmp_path / "LMUData")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [
        sys.executable,
        "-m",
        "h2ovl.cli",
        "evaluate",
        "--released",
        "h2oai/h2ovl-mississippi-800m",
        "--data",
        str(data),
        "--max-new-tokens",
        "2",
        "--out",
        str(tmp_path / "eval"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["anls/n"] == 3
    missing = subprocess.run(
        [*command[:5], "h2oai/not-cached", *command[6:]], env=env, capture_output=True, text=True, timeout=300
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith(
        "h2ovl evaluate: error: model.init.released 'h2oai/not-cached': neither a local path nor obtainable"
    )
    assert len(missing.stderr.strip().splitlines()) == 1


def _internvit_release(folder: Path, model: H2OVL) -> None:
    """OpenGVLab's InternViT layout: config.json (InternVisionModel) and safetensors in InternViT's names."""
    folder.mkdir(parents=True)
    save_file(
        {timm_to_internvit(k): v.clone().contiguous() for k, v in model.vision.vit.state_dict().items()},
        str(folder / "model.safetensors"),
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["InternVisionModel"],
                "model_type": "intern_vit_6b",
                "hidden_size": model.vision.width,
                "num_hidden_layers": model.vision.num_blocks,
            }
        )
    )


def test_the_vision_encoder_loads_from_an_internvit_release_by_folder_hub_id_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import huggingface_hub.constants

    from h2ovl.training.module import H2OVLModule
    from h2ovl.training.settings import Initialization

    torch.manual_seed(1)
    source, _ = H2OVL.from_preset("tiny")
    _internvit_release(tmp_path / "InternViT-300M-448px", source)
    fill_hub_cache(tmp_path / "hub", "OpenGVLab/InternViT-300M-448px", tmp_path / "InternViT-300M-448px")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    prefixed = tmp_path / "chat.safetensors"  # an InternVL-chat checkpoint's tensors: only vision_model.* is taken
    save_file(
        {
            **{f"vision_model.{timm_to_internvit(k)}": v.clone() for k, v in source.vision.vit.state_dict().items()},
            "mlp1.0.weight": torch.zeros(2),
        },
        str(prefixed),
    )
    for weights in (
        str(tmp_path / "InternViT-300M-448px"),
        "OpenGVLab/InternViT-300M-448px",
        str(tmp_path / "InternViT-300M-448px" / "model.safetensors"),
        str(prefixed),
    ):
        loaded = H2OVLModule(preset="tiny", init=Initialization(vision_weights=weights)).model.vision
        for (name, a), b in zip(source.vision.state_dict().items(), loaded.state_dict().values()):
            assert torch.equal(a, b), (weights, name)


def _steer_to_answer(model: H2OVL, prompt: list[int], answer: int, end: int) -> None:
    """Greedy decoding answers `answer`, then `end`: the final norm keeps channel 0, which the embeddings set to
    +100 except at the prompt's last token (-100); lm_head maps -1 on it to `answer` and +1 to `end`."""
    with torch.no_grad():
        lm = model.llm
        lm.lm_head.weight = torch.nn.Parameter(lm.lm_head.weight.clone())
        lm.model.norm.weight.zero_()
        lm.model.norm.weight[0] = 1.0
        lm.model.embed_tokens.weight[:, 0] = 100.0
        lm.model.embed_tokens.weight[prompt[-1], 0] = -100.0
        lm.lm_head.weight.zero_()
        lm.lm_head.weight[answer, 0], lm.lm_head.weight[end, 0] = -1.0, 1.0


def test_exports_stop_at_end_in_a_plain_generate_and_carry_what_vllm_reads(tmp_path: Path):
    from transformers import AutoTokenizer, InternVLForConditionalGeneration, PretrainedConfig

    torch.manual_seed(0)
    model, tokenizer = H2OVL.from_preset("tiny")
    end, eos = tokenizer.convert_tokens_to_ids(END), tokenizer.eos_token_id
    prompt = tokenizer("<|prompt|>read the total<|end|><|answer|>", add_special_tokens=False).input_ids
    answer = tokenizer("7", add_special_tokens=False).input_ids[0]
    _steer_to_answer(model.eval(), prompt, answer, end)
    model.save_released(tmp_path / "released", tokenizer)
    assert main(["export", "--released", str(tmp_path / "released"), "--out", str(tmp_path / "hf")]) == 0

    for folder in ("released", "hf"):
        generation = json.loads((tmp_path / folder / "generation_config.json").read_text())
        assert generation["eos_token_id"] == [end, eos] and generation["pad_token_id"] == end
    hf = InternVLForConditionalGeneration.from_pretrained(str(tmp_path / "hf")).eval()
    ids = torch.tensor([prompt])
    with torch.no_grad():  # no eos_token_id passed: the exported generation config stops it
        generated = hf.generate(input_ids=ids, max_new_tokens=6, do_sample=False)[0, len(prompt) :]
    assert generated.tolist() == [answer, end]
    released = H2OVL.from_released(tmp_path / "released").eval()
    assert released.generate(ids, max_new_tokens=6)[0].tolist() == [answer, end]
    assert AutoTokenizer.from_pretrained(str(tmp_path / "hf")).decode(generated, skip_special_tokens=True) == "7"

    # vLLM's H2OVL builds its config as PretrainedConfig(**vision_config) / (**llm_config) and reads these.
    raw = json.loads((tmp_path / "released" / "config.json").read_text())
    assert raw["model_type"] == "h2ovl_chat" and raw["architectures"] == ["H2OVLChatModel"]
    for key in (
        "force_image_size",
        "downsample_ratio",
        "ps_version",
        "select_layer",
        "template",
        "dynamic_image_size",
        "use_thumbnail",
        "min_dynamic_patch",
        "max_dynamic_patch",
        "use_msac",
    ):
        assert key in raw, key
    vision = PretrainedConfig(**raw["vision_config"])
    for key in (
        "hidden_size",
        "image_size",
        "patch_size",
        "num_attention_heads",
        "qkv_bias",
        "qk_normalization",
        "layer_norm_eps",
        "norm_type",
        "intermediate_size",
        "hidden_act",
        "initializer_factor",
        "num_hidden_layers",
    ):
        assert hasattr(vision, key), key
    assert PretrainedConfig(**raw["llm_config"]).architectures == ["LlamaForCausalLM"]
