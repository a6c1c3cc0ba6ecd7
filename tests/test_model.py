"""The model: presets and shapes, pixel shuffle order, splicing and loss, freezing, generation,
the released checkpoint layout, and parity with transformers' own InternVL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig, LlamaConfig

from h2ovl.errors import SettingError
from h2ovl.model import H2OVL, IGNORE_INDEX, pixel_shuffle, preset
from h2ovl.model.hf_internvl import save_hf_internvl_as_released
from h2ovl.model.projector import build_projector, fit_projector_input
from h2ovl.model.tokenizer import IMG_CONTEXT
from h2ovl.preprocessing import MSAC, DynamicResolution


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return H2OVL.from_preset("tiny")


def _prompt(tokenizer, n_image_tokens: int, question: str = "read", answer: str = "12345"):
    text = f"<|prompt|><img>{IMG_CONTEXT * n_image_tokens}</img>\n{question}<|end|><|answer|>{answer}<|end|>"
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    answer_len = len(tokenizer(f"{answer}<|end|>", add_special_tokens=False).input_ids)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -answer_len:] = ids[:, -answer_len:]
    return ids, labels


@pytest.mark.parametrize(
    "name, total, vision, llm_type, preprocessor",
    [
        ("h2ovl-0.8b", 0.83e9, 304.0e6, "LlamaForCausalLM", "DynamicResolution"),
        ("h2ovl-2b", 2.15e9, 304.0e6, "MistralForCausalLM", "MSAC"),
    ],
)
def test_released_presets_have_the_paper_shapes(name, total, vision, llm_type, preprocessor):
    with torch.device("meta"):  # shapes only: no memory, no download
        model = H2OVL(preset(name), image_token_id=0)
    report = model.parameter_report()
    assert report["total"]["trainable"] == pytest.approx(total, rel=0.01)
    assert report["vision"]["trainable"] == pytest.approx(vision, rel=0.01)
    assert type(model.llm).__name__ == llm_type
    assert model.tokens_per_tile == 256 and model.vision.width == 1024 and model.vision.num_blocks == 24
    assert model.projector[1].in_features == 4096 and model.projector[3].out_features == model.llm.config.hidden_size
    assert preset(name).preprocessor["class_path"].endswith(preprocessor)


def test_pixel_shuffle_follows_the_v2_order():
    side, dim = 4, 3
    grid = torch.arange(side * side * dim, dtype=torch.float32).reshape(1, side * side, dim)
    out = pixel_shuffle(grid, 0.5)
    assert out.shape == (1, 4, 4 * dim)
    patch = lambda r, c: grid[0, r * side + c]  # noqa: E731
    for R in range(2):
        for C in range(2):
            expected = torch.cat(
                [patch(2 * R, 2 * C), patch(2 * R, 2 * C + 1), patch(2 * R + 1, 2 * C), patch(2 * R + 1, 2 * C + 1)]
            )
            assert torch.equal(out[0, R * 2 + C], expected)
    with pytest.raises(ValueError, match="1/p"):
        pixel_shuffle(grid, 0.3)


def test_pixel_shuffle_off_gives_one_token_per_patch():
    model, tokenizer = H2OVL.from_preset("tiny", downsample_ratio=None)
    assert model.tokens_per_tile == 64 and model.projector[0].normalized_shape == (64,)
    ids, labels = _prompt(tokenizer, 64)
    assert torch.isfinite(model(ids, pixel_values=torch.zeros(1, 3, 64, 64, dtype=torch.uint8), labels=labels).loss)


@pytest.mark.parametrize("factor", [2, 3])
def test_projector_carried_across_a_pixel_shuffle_switch_is_exact_on_equal_patches(factor: int):
    torch.manual_seed(0)
    d, n = 8, 5
    shuffled, plain = build_projector(factor * factor * d, 16), build_projector(d, 16)
    with torch.no_grad():  # a trained-looking LayerNorm, not the identity it starts as
        for norm in (shuffled[0], plain[0]):
            norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(n, d)
    # n tokens, each a factor x factor block of one repeated patch, through the real pixel shuffle
    patches = x[:, None, None, :].expand(n, factor, factor, d).reshape(n, factor * factor, d)
    tokens = pixel_shuffle(patches, 1.0 / factor).squeeze(1)

    folded = build_projector(d, 16)
    folded.load_state_dict(fit_projector_input(shuffled.state_dict(), "", d))
    torch.testing.assert_close(folded(x), shuffled(tokens), rtol=1e-5, atol=1e-5)
    spread = build_projector(factor * factor * d, 16)
    spread.load_state_dict(fit_projector_input(plain.state_dict(), "", factor * factor * d))
    torch.testing.assert_close(spread(tokens), plain(x), rtol=1e-5, atol=1e-5)
    # not a pixel-shuffle change: refused, naming both widths
    with pytest.raises(ValueError, match="width 8 cannot become 24"):
        fit_projector_input(plain.state_dict(), "", 3 * d)


def test_conv_stem_keeps_the_token_grid_and_trains(tmp_path: Path):
    model, tokenizer = H2OVL.from_preset("tiny-reader")
    assert model.vision.has_conv_stem and not H2OVL.from_preset("tiny")[0].vision.has_conv_stem
    assert model.vision.patch_size == 8 and model.vision.num_patches == 64 and model.tokens_per_tile == 16
    stem_convs = [m for m in model.vision.vit.patch_embed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in stem_convs] == [(2, 2), (2, 2), (2, 2), (1, 1)]  # three stride-2 convs, 1x1 projection
    ids, labels = _prompt(tokenizer, 16)
    loss = model(ids, pixel_values=torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), labels=labels).loss
    loss.backward()
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in stem_convs)
    with pytest.raises(ValueError, match="no place for a conv stem"):
        model.save_released(tmp_path / "released")
    assert not (tmp_path / "released").exists()
    bad = preset("tiny-reader")
    bad.vision.conv_stem = [32, 64]  # strides multiply to 4, not the patch size 8
    with pytest.raises(ValueError, match=r"conv_stem \[32, 64\].*patch_size=8"):
        H2OVL(bad, image_token_id=0)


def test_loss_counts_supervised_tokens_only_and_backpropagates_to_every_part(tiny):
    model, tokenizer = tiny
    ids, labels = _prompt(tokenizer, 2 * model.tokens_per_tile)
    tiles = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    out = model(ids, pixel_values=tiles, labels=labels)
    logits = out.logits[0, :-1]
    target = labels[0, 1:]
    mask = target != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[mask], target[mask])
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    model.zero_grad()
    out.loss.backward()
    for part in ("vision", "projector", "llm"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, part).parameters()), part


def test_uint8_and_normalised_tiles_give_the_same_logits(tiny):
    model, tokenizer = tiny
    ids, _ = _prompt(tokenizer, model.tokens_per_tile)
    tiles = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    normalised = model.normalizer(tiles)
    assert torch.allclose(model(ids, pixel_values=tiles).logits, model(ids, pixel_values=normalised).logits)


def test_visual_tokens_land_in_tile_order(tiny):
    model, tokenizer = tiny
    ids, _ = _prompt(tokenizer, 2 * model.tokens_per_tile)
    tiles = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    embeds = model.embed(ids, tiles)
    slots = (ids[0] == model.image_token_id).nonzero().squeeze(1)
    first_tile = model.encode_images(tiles[:1])
    assert torch.allclose(embeds[0, slots[: model.tokens_per_tile]], first_tile)


def test_token_count_mismatch_is_an_error_naming_both_counts(tiny):
    model, tokenizer = tiny
    ids, labels = _prompt(tokenizer, model.tokens_per_tile)
    tiles = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    model.eval()
    with pytest.raises(ValueError, match=r"hold 16 <IMG_CONTEXT> tokens but the 2 tiles give 32 visual tokens"):
        model(ids, pixel_values=tiles)
    with pytest.raises(ValueError, match="no pixel_values"):
        model(ids)
    # In training the check runs on the device without a host sync (on a GPU: a device-side assert).
    model.train()
    with pytest.raises(RuntimeError, match=r"<IMG_CONTEXT> tokens are not the 32 visual tokens of the 2 tiles"):
        model(ids, pixel_values=tiles)


def test_all_masked_labels_are_refused(tiny):
    model, tokenizer = tiny
    ids, labels = _prompt(tokenizer, 0)
    with pytest.raises(ValueError, match="zero loss"):
        model(ids, labels=torch.full_like(labels, IGNORE_INDEX))


def test_freezing_per_part_and_last_vit_blocks(tiny):
    model, _ = tiny
    model.set_trainable(vision=False, projector=True, llm=False, vision_last_blocks=1)
    report = model.parameter_report()
    last_block = sum(p.numel() for p in model.vision.blocks[-1].parameters())
    assert report["vision"]["trainable"] == last_block and report["vision"]["frozen"] > 0
    assert report["projector"]["frozen"] == 0 and report["llm"]["trainable"] == 0
    assert report["total"]["trainable"] == last_block + report["projector"]["trainable"]
    with pytest.raises(ValueError, match="vision_last_blocks=9"):
        model.set_trainable(vision_last_blocks=9)
    model.set_trainable(vision=True, projector=True, llm=True)
    assert model.parameter_report()["total"]["frozen"] == 0


def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    model, tokenizer = tiny
    ids, labels = _prompt(tokenizer, model.tokens_per_tile)
    tiles = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    model.train()
    grads = []
    for enabled in (False, True):
        model.set_gradient_checkpointing(vision=enabled, llm=enabled)
        model.zero_grad()
        model(ids, pixel_values=tiles, labels=labels).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    model.set_gradient_checkpointing(False, False)
    model.eval()
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_batched_left_padded_generation_matches_one_at_a_time(tiny):
    model, tokenizer = tiny
    model.eval()
    prompts = [_prompt(tokenizer, model.tokens_per_tile, question=q)[0][:, :-4] for q in ("read the text", "total")]
    tiles = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    singles = [
        model.generate(p, pixel_values=tiles[i : i + 1], max_new_tokens=6, min_new_tokens=6)[0]
        for i, p in enumerate(prompts)
    ]
    width = max(p.shape[1] for p in prompts)
    pad = tokenizer.pad_token_id
    ids = torch.stack([torch.cat([torch.full((width - p.shape[1],), pad), p[0]]) for p in prompts])
    mask = torch.stack(
        [
            torch.cat([torch.zeros(width - p.shape[1], dtype=torch.long), torch.ones(p.shape[1], dtype=torch.long)])
            for p in prompts
        ]
    )
    batched = model.generate(ids, attention_mask=mask, pixel_values=tiles, max_new_tokens=6, min_new_tokens=6)
    for single, row in zip(singles, batched):
        assert torch.equal(single, row)


def test_released_round_trip_is_lossless(tmp_path: Path):
    model, tokenizer = H2OVL.from_preset("tiny-mistral")
    model.save_released(tmp_path, tokenizer)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["use_msac"] is True and config["ps_version"] == "v2" and config["downsample_ratio"] == 0.5
    keys = load_file(str(tmp_path / "model.safetensors")).keys()
    assert "vision_model.embeddings.class_embedding" in keys and "mlp1.3.weight" in keys
    assert "vision_model.encoder.layers.1.ls2" in keys and "language_model.lm_head.weight" in keys
    loaded = H2OVL.from_released(tmp_path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert isinstance(loaded.build_preprocessor(), MSAC)
    assert loaded.image_token_id == model.image_token_id


def test_a_model_trained_on_mixed_views_is_not_exported_as_one_preprocessors(tmp_path: Path):
    model, tokenizer = H2OVL.from_preset("tiny")
    model.config.preprocessor = {
        "class_path": "h2ovl.preprocessing.MixedViews",
        "init_args": {"choices": [{"class_path": "h2ovl.preprocessing.FixedResize"}]},
    }
    with pytest.raises(SettingError, match="MixedViews"):
        model.save_released(tmp_path, tokenizer)
    assert not (tmp_path / "config.json").exists()


def test_released_loading_is_strict(tmp_path: Path):
    model, tokenizer = H2OVL.from_preset("tiny")
    model.save_released(tmp_path, tokenizer)
    assert isinstance(H2OVL.from_released(tmp_path).build_preprocessor(), DynamicResolution)
    weights = load_file(str(tmp_path / "model.safetensors"))
    weights["mlp1.1.weight"] = weights["mlp1.1.weight"][:, :-1].contiguous()
    del weights["mlp1.3.bias"]
    weights["vision_model.extra"] = torch.zeros(1)
    save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError) as err:
        H2OVL.from_released(tmp_path)
    message = str(err.value)
    assert "shape of 'mlp1.1.weight'" in message and "missing tensor 'mlp1.3.bias'" in message
    assert "unexpected tensor 'vision_model.extra'" in message


def _tiny_hf_internvl(vocab: int, image_token_id: int) -> InternVLForConditionalGeneration:
    """transformers' own InternVL at a tiny shape: 32-px tiles of 8-px patches, 4 tokens per tile."""
    vision = InternVLVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=[32, 32],
        patch_size=[8, 8],
        attention_bias=True,
        layer_norm_eps=1e-6,
    )
    text = LlamaConfig(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        tie_word_embeddings=False,
    )
    hf = InternVLForConditionalGeneration(
        InternVLConfig(vision_config=vision, text_config=text, image_token_id=image_token_id, downsample_ratio=0.5)
    ).eval()
    with torch.no_grad():  # layer scales and norms away from their constant init, so they are tested
        for name, param in hf.named_parameters():
            if "lambda" in name or "layernorm" in name or "layer_norm" in name or "norm.weight" in name:
                param.uniform_(0.5, 1.5)
    return hf


def test_parity_with_transformers_internvl(tmp_path: Path):
    torch.manual_seed(0)
    image_token_id, vocab = 99, 100
    hf = _tiny_hf_internvl(vocab, image_token_id)
    save_hf_internvl_as_released(hf, tmp_path)
    ours = H2OVL.from_released(tmp_path, image_token_id=image_token_id).eval()

    tiles_per_image, tokens = 3, 4  # (32/8)^2 * 0.5^2 = 4 tokens per tile
    ids = torch.randint(0, image_token_id, (2, 30))
    ids[0, 2 : 2 + tiles_per_image * tokens] = image_token_id
    ids[1, 5 : 5 + tiles_per_image * tokens] = image_token_id
    pixel_values = torch.randn(2 * tiles_per_image, 3, 32, 32)  # normalised floats, as transformers takes them
    with torch.no_grad():
        expected = hf(input_ids=ids, pixel_values=pixel_values).logits
        actual = ours(ids, pixel_values=pixel_values).logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_a_released_checkpoint_whose_tokenizer_keeps_the_markers_as_text(tmp_path: Path):
    """The released layout as shipped: the ten H2OVL tokens in the tokenizer, `<|prompt|>`/`<|answer|>`
    plain text, embeddings exactly the vocabulary. It loads without adding or resizing anything, its logits
    equal transformers' InternVL on a templated sample, and generation stops at `<|end|>`."""
    from h2ovl.data.template import ConversationEncoder

    from support.released_tokenizer import write_released_tokenizer

    torch.manual_seed(0)
    tokenizer = write_released_tokenizer(tmp_path)
    vocab, image_token_id, end_id = (
        len(tokenizer),
        tokenizer.convert_tokens_to_ids(IMG_CONTEXT),
        tokenizer.convert_tokens_to_ids("<|end|>"),
    )
    hf = _tiny_hf_internvl(vocab, image_token_id)
    save_hf_internvl_as_released(hf, tmp_path)
    ours = H2OVL.from_released(tmp_path).eval()
    assert ours.llm.get_input_embeddings().num_embeddings == vocab and ours.image_token_id == image_token_id
    assert end_id in ours.end_token_ids

    tiles = 3
    encoded = ConversationEncoder(tokenizer).encode([("<image>\nread the total", "12.50")], image_tokens=[tiles * 4])
    ids = torch.tensor([encoded.input_ids])
    pixel_values = torch.randn(tiles, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(ids, pixel_values=pixel_values).logits,
            hf(input_ids=ids, pixel_values=pixel_values).logits,
            atol=1e-4,
            rtol=0,
        )

    # Steer greedy decoding (both models alike): the final norm keeps one channel, which the embeddings set
    # to +100 except at the prompt's last token (-100); lm_head maps -1 on it to the answer's first token
    # and +1 to <|end|>. So the answer is that token, then <|end|>, where generation must stop.
    first = next(i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX)
    prompt, answer_token = ids[:, :first], encoded.input_ids[first]
    with torch.no_grad():
        hf.lm_head.weight = torch.nn.Parameter(
            hf.lm_head.weight.clone()
        )  # transformers ties them; the released layout does not
        lm = hf.model.language_model
        lm.norm.weight.zero_()
        lm.norm.weight[0] = 1.0
        lm.embed_tokens.weight[:, 0] = 100.0
        lm.embed_tokens.weight[prompt[0, -1], 0] = -100.0
        hf.lm_head.weight.zero_()
        hf.lm_head.weight[answer_token, 0], hf.lm_head.weight[end_id, 0] = -1.0, 1.0
    steered = tmp_path / "steered"
    save_hf_internvl_as_released(hf, steered)
    tokenizer.save_pretrained(str(steered))
    ours = H2OVL.from_released(steered).eval()
    with torch.no_grad():
        expected = hf.generate(
            input_ids=prompt, pixel_values=pixel_values, max_new_tokens=6, do_sample=False, eos_token_id=end_id
        )[0, first:]
        generated = ours.generate(prompt, pixel_values=pixel_values, max_new_tokens=6)[0]
    assert generated.tolist() == expected.tolist() == [answer_token, end_id]
    assert tokenizer.decode(generated[:-1]) == tokenizer.decode([answer_token])


def test_export_to_transformers_internvl_loads_without_remote_code(tmp_path: Path, capsys: pytest.CaptureFixture):
    """`h2ovl export`: a checkpoint's model as transformers' own InternVL + processor. The exported model's
    logits equal ours on the processor's own inputs (its tiling of an image is ours: dynamic resolution
    with a thumbnail) and on tiles from h2ovl's preprocessor (the way to serve MSAC)."""
    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor

    from h2ovl.cli import main

    torch.manual_seed(0)
    model, tokenizer = H2OVL.from_preset("tiny")
    model.eval()
    model.save_released(tmp_path / "released", tokenizer)
    out = tmp_path / "hf"
    assert main(["export", "--released", str(tmp_path / "released"), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"out": str(out), "format": "transformers"}
    hf = InternVLForConditionalGeneration.from_pretrained(str(out)).eval()
    processor = AutoProcessor.from_pretrained(str(out))
    assert len(processor.tokenizer) == len(tokenizer)  # nothing added: the vocabulary is the embeddings'

    image = Image.fromarray((np.random.default_rng(0).random((60, 130, 3)) * 255).astype("uint8"))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "read"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == f"<|prompt|>{IMG_CONTEXT}\nread<|end|><|answer|>"
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    tiles = model.build_preprocessor()(image).tiles
    assert inputs["pixel_values"].shape[0] == tiles.shape[0] == 3  # 2x1 grid + thumbnail, as ours
    assert int((inputs["input_ids"] == model.image_token_id).sum()) == 3 * model.tokens_per_tile
    with torch.no_grad():
        torch.testing.assert_close(
            hf(**inputs).logits,
            model(inputs["input_ids"], pixel_values=inputs["pixel_values"]).logits,
            atol=1e-5,
            rtol=0,
        )
        ours_tiles = model.normalizer(tiles)
        torch.testing.assert_close(
            hf(input_ids=inputs["input_ids"], pixel_values=ours_tiles).logits,
            model(inputs["input_ids"], pixel_values=ours_tiles).logits,
            atol=1e-5,
            rtol=0,
        )
    reader, _ = H2OVL.from_preset("tiny-reader")  # a conv stem: no place for it in transformers' InternVL
    with pytest.raises(ValueError, match="no place for a conv stem"):
        from h2ovl.model.hf_internvl import export_hf_internvl

        export_hf_internvl(reader, tmp_path / "no", tokenizer)


def test_pretrained_parts_load_from_local_paths(tmp_path: Path):
    """The real loading code, through the module's config keys, on files this test writes: timm
    weights, an LLM directory, a tokenizer directory."""
    from h2ovl.training import H2OVLModule, Initialization, Trainable

    source, tokenizer = H2OVL.from_preset("tiny")
    save_file({k: v.clone() for k, v in source.vision.vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    source.llm.save_pretrained(str(tmp_path / "llm"))
    tokenizer.save_pretrained(str(tmp_path / "tokenizer"))
    parts = Initialization(
        vision_weights=str(tmp_path / "vit.safetensors"),
        llm=str(tmp_path / "llm"),
        tokenizer=str(tmp_path / "tokenizer"),
    )
    module = H2OVLModule(preset="tiny", init=parts)
    loaded = module.model
    for part in ("vision", "llm"):
        for (name, a), (_, b) in zip(
            getattr(source, part).state_dict().items(), getattr(loaded, part).state_dict().items()
        ):
            assert torch.equal(a, b), f"{part}.{name}"
    assert module.tokenizer.get_vocab() == tokenizer.get_vocab()
    bad = tmp_path / "bad.safetensors"
    save_file({"not_a_vit_key": torch.zeros(1)}, str(bad))
    with pytest.raises(ValueError, match="bad.safetensors: weights do not fit the vision encoder"):
        H2OVLModule(preset="tiny", init=Initialization(vision_weights=str(bad)))
    # The ViT is built on the meta device and takes the file's tensors: fp32 whatever the file's dtype,
    # every tensor real, trainable as configured.
    half = tmp_path / "vit-bf16.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in source.vision.vit.state_dict().items()}, str(half))
    vit = H2OVLModule(
        preset="tiny", init=Initialization(vision_weights=str(half)), trainable=Trainable(vision=True)
    ).model.vision.vit
    assert all(p.dtype == torch.float32 and not p.is_meta and p.requires_grad for p in vit.parameters())
    expected = {k: v.to(torch.bfloat16).float() for k, v in source.vision.vit.state_dict().items()}
    assert all(torch.equal(expected[k], v) for k, v in vit.state_dict().items())


def test_real_presets_refuse_the_tiny_tokenizer_and_parts_that_do_not_belong_together(tmp_path: Path):
    from h2ovl.model.tokenizer import build_tiny_tokenizer

    with pytest.raises(ValueError, match="preset 'h2ovl-0.8b' needs a real tokenizer"):
        H2OVL.from_preset("h2ovl-0.8b")
    source, _ = H2OVL.from_preset("tiny")  # an LLM with 522 embedding rows
    source.llm.save_pretrained(str(tmp_path / "llm"))
    build_tiny_tokenizer(vocab_size=700).save_pretrained(str(tmp_path / "other"))
    with pytest.raises(ValueError, match=r"has 542 tokens \(\+0 H2OVL tokens\) but the LLM .* has 522 embedding rows"):
        H2OVL.from_preset("tiny", llm_weights=str(tmp_path / "llm"), tokenizer=str(tmp_path / "other"))


def test_tiny_llm_weights_are_scaled_to_its_width():
    # transformers' initializer_range 0.02 suits widths in the thousands; the tiny presets (width 64) use
    # 0.06, without which a from-scratch model ignores the image for hundreds of steps. Released shapes
    # keep the library default.
    torch.manual_seed(0)
    model, _ = H2OVL.from_preset("tiny-reader")
    layer = model.llm.model.layers[0]
    for weight in (layer.self_attn.q_proj.weight, layer.mlp.up_proj.weight, model.llm.get_input_embeddings().weight):
        assert weight.std().item() == pytest.approx(0.06, rel=0.1)
    assert "initializer_range" not in preset("h2ovl-0.8b").llm and "initializer_range" not in preset("h2ovl-2b").llm
