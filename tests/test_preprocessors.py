"""Pixels: tile order, thumbnails, identity with the InternVL-style reference, the fast path,
normalisation on device, and construction from `class_path` configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from PIL import Image

from h2ovl.preprocessing import (
    MSAC,
    DynamicResolution,
    FixedResize,
    ImagePreprocessor,
    MixedViews,
    TileNormalizer,
    instantiate_preprocessor,
)
from h2ovl.preprocessing.reference import reference_pixel_values, reference_tiles

from conftest import noise_image

T = 32  # small tiles keep pixel tests fast; the rules do not depend on T


def _as_array(tile: torch.Tensor) -> np.ndarray:
    return tile.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("size", [(100, 50), (40, 130), (90, 90), (33, 31)])
def test_dynamic_tiles_are_the_row_major_crops_of_the_resized_image(size):
    image = noise_image(*size)
    out = DynamicResolution(tile_size=T, max_tiles=6)(image)
    grid = out.plan.grids["grid"]
    resized = np.asarray(image.resize((grid.cols * T, grid.rows * T), Image.Resampling.BICUBIC))
    for i in range(grid.n_tiles):
        col, row = i % grid.cols, i // grid.cols
        crop = resized[row * T : (row + 1) * T, col * T : (col + 1) * T]
        np.testing.assert_array_equal(_as_array(out.tiles[i]), crop)
    if grid.n_tiles > 1:
        thumbnail = np.asarray(image.resize((T, T), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(_as_array(out.tiles[-1]), thumbnail)
        assert out.n_tiles == grid.n_tiles + 1
    else:
        assert out.n_tiles == 1


def test_msac_tiles_are_fine_then_coarse_then_thumbnail():
    image = noise_image(61, 100)  # -> coarse (2,3), fine (3,2) at T=32? checked below
    out = MSAC(tile_size=T, max_tiles=6)(image)
    fine, coarse = out.plan.grids["fine"], out.plan.grids["coarse"]
    assert (coarse, fine) == ((2, 3), (3, 2))
    expected = []
    for grid in (fine, coarse):
        resized = np.asarray(image.resize((grid.cols * T, grid.rows * T), Image.Resampling.BICUBIC))
        expected += [
            resized[r * T : (r + 1) * T, c * T : (c + 1) * T] for r in range(grid.rows) for c in range(grid.cols)
        ]
    expected.append(np.asarray(image.resize((T, T), Image.Resampling.BICUBIC)))
    assert out.n_tiles == len(expected) == 13
    for tile, want in zip(out.tiles, expected):
        np.testing.assert_array_equal(_as_array(tile), want)


def test_fixed_resize_is_one_squashed_tile():
    image = noise_image(300, 40)
    out = FixedResize(tile_size=T)(image)
    assert out.tiles.shape == (1, 3, T, T) and out.tiles.dtype == torch.uint8
    np.testing.assert_array_equal(_as_array(out.tiles[0]), np.asarray(image.resize((T, T), Image.Resampling.BICUBIC)))


@pytest.mark.parametrize("preprocessor", [FixedResize(tile_size=T), DynamicResolution(tile_size=T), MSAC(tile_size=T)])
def test_default_path_matches_the_reference_pipeline_after_normalisation(preprocessor):
    image = noise_image(150, 70, seed=3)
    out = preprocessor(image)
    assert out.tiles.dtype == torch.uint8
    reference = reference_pixel_values(image, out.plan, T)
    assert torch.equal(TileNormalizer()(out.tiles), reference)
    for tile, ref in zip(out.tiles, reference_tiles(image, out.plan, T)):
        np.testing.assert_array_equal(_as_array(tile), np.asarray(ref))


def test_normalizer_passes_float_tiles_through_and_casts():
    tiles = torch.randn(2, 3, 4, 4)
    assert torch.equal(TileNormalizer()(tiles), tiles)
    assert TileNormalizer()(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(TypeError, match="uint8"):
        TileNormalizer()(torch.zeros(1, 3, 2, 2, dtype=torch.int32))


def test_normalizer_computes_in_fp32_even_when_cast_to_bf16():
    """bf16 mixed or true precision may cast the module's buffers; the mean and std must not be rounded."""
    tiles = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    reference = TileNormalizer()(tiles)
    cast = TileNormalizer().to(torch.bfloat16)
    assert cast.mean.dtype == torch.float32
    assert torch.equal(cast(tiles), reference)


def test_fast_path_stays_within_one_grey_level_of_the_reference(tmp_path: Path):
    # A large JPEG where reduced-scale decoding applies (4000x3000 -> 3x2 grid of 448 tiles).
    from h2ovl.demo.sample_images import render_document

    path = tmp_path / "scan.jpg"
    render_document(4000, 3000, seed=1).save(path, quality=90)
    exact = DynamicResolution()(path)
    fast = DynamicResolution(fast_path=True)(path)
    assert exact.plan == fast.plan
    diff = (exact.tiles.float() - fast.tiles.float()).abs().mean().item()
    assert 0 < diff <= 1.0


def test_fast_path_respects_exif_rotation(tmp_path: Path):
    image = noise_image(1600, 400)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed portrait
    path = tmp_path / "rotated.jpg"
    image.save(path, quality=95, exif=exif)
    exact = DynamicResolution(tile_size=T)(path)
    fast = DynamicResolution(tile_size=T, fast_path=True)(path)
    assert exact.plan.image_size == (400, 1600) == fast.plan.image_size
    assert fast.tiles.shape == exact.tiles.shape


PREPROCESSOR_CONFIGS = sorted((Path(__file__).parent.parent / "configs" / "preprocessor").glob("*.yaml"))


@pytest.mark.parametrize("config", PREPROCESSOR_CONFIGS, ids=lambda p: p.stem)
def test_preprocessor_configs_instantiate_through_class_path(config: Path):
    parser = ArgumentParser()
    parser.add_argument("--preprocessor", type=ImagePreprocessor)
    cfg = parser.parse_object({"preprocessor": yaml.safe_load(config.read_text())})
    preprocessor = parser.instantiate(cfg).preprocessor
    assert isinstance(preprocessor, ImagePreprocessor)
    assert preprocessor.tile_size == 448 and preprocessor(noise_image(50, 50)).tiles.shape[1:] == (3, 448, 448)


def test_all_three_variants_have_a_config():
    assert {p.stem for p in PREPROCESSOR_CONFIGS} >= {"fixed", "dynamic", "msac"}


def test_process_sample_applies_the_multi_image_rule():
    images = [noise_image(200, 50), noise_image(200, 50, seed=1)]
    outs = MSAC(tile_size=T, max_tiles=6).process_sample(images)
    assert [o.plan.grids["grid"] for o in outs] == [(3, 1), (3, 1)]  # budget 6 // 2 = 3, dynamic per image
    assert [o.n_tiles for o in outs] == [4, 4]


def test_mixed_views_show_each_image_through_one_choice_the_same_every_time_wherever_it_lies(tmp_path: Path):
    choices = [
        FixedResize(tile_size=T),
        DynamicResolution(tile_size=T, max_tiles=4, use_thumbnail=False),
        MSAC(tile_size=T, max_tiles=4, use_thumbnail=False),
    ]
    mixed = MixedViews(choices)
    paths = []
    for k in range(60):
        paths.append(tmp_path / f"{k}.png")
        noise_image(120, 40, seed=k).save(paths[-1])
    chosen = [mixed.choose(path) for path in paths]
    assert {type(c) for c in chosen} == {FixedResize, DynamicResolution, MSAC}  # every view gets its share
    assert all(chosen.count(c) >= 10 for c in choices)
    for path, choice in zip(paths[:6], chosen):
        out = mixed(path)
        assert torch.equal(out.tiles, choice(path).tiles) and out.plan == choice(path).plan
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for path, choice in zip(paths[:10], chosen):  # the file's bytes choose, not its path
        (moved / path.name).write_bytes(path.read_bytes())
        assert mixed.choose(moved / path.name) is choice
        assert mixed.choose(Image.open(path)) is mixed.choose(Image.open(moved / path.name))
    assert [type(MixedViews(choices, seed=1).choose(p)) for p in paths] != [type(c) for c in chosen]

    rebuilt = instantiate_preprocessor(mixed.config())
    assert isinstance(rebuilt, MixedViews) and rebuilt.config() == mixed.config() and rebuilt.max_tiles == 4
    assert [type(rebuilt.choose(p)) for p in paths] == [type(c) for c in chosen]
    with pytest.raises(ValueError, match=r"tile sizes \[32, 64\]"):
        MixedViews([FixedResize(tile_size=T), FixedResize(tile_size=64)])


def test_the_short_names_build_their_preprocessors_and_a_wrong_name_lists_them(tmp_path, capsys):
    from h2ovl.cli import main
    from h2ovl.errors import SettingError
    from h2ovl.preprocessing import MSAC, DynamicResolution, FixedResize, instantiate_preprocessor

    for short, cls in (("fixed", FixedResize), ("dynamic", DynamicResolution), ("MSAC", MSAC)):
        assert type(instantiate_preprocessor(short)) is cls
    with pytest.raises(
        SettingError, match=r"name one of fixed \(FixedResize\), dynamic \(DynamicResolution\), msac \(MSAC\)"
    ):
        instantiate_preprocessor("tiles")
    from conftest import noise_image

    noise_image(300, 100).save(tmp_path / "a.png")
    assert (
        main(
            [
                "preview",
                str(tmp_path / "a.png"),
                "--preprocessor",
                "dynamic",
                "--json",
                "--out",
                str(tmp_path / "p.png"),
            ]
        )
        == 0
    )
    assert main(["preview", str(tmp_path / "a.png"), "--preprocessor", "tiles"]) == 2
    assert "name one of fixed (FixedResize)" in capsys.readouterr().err
