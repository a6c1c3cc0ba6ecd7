"""Bad and unusual input: every PIL mode, EXIF orientation, extreme aspect ratios, broken files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from h2ovl.preprocessing import MSAC, DynamicResolution, FixedResize, ImageLoadError, load_image

from conftest import noise_image


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr", "RGB"])
def test_every_mode_becomes_rgb(mode):
    # 16-bit greyscale from its own pixels: older Pillow releases cannot convert RGB to it.
    pixels16 = (np.arange(200, dtype="<u2") * 300).tobytes()
    source = Image.frombytes("I;16", (20, 10), pixels16) if mode == "I;16" else noise_image(20, 10).convert(mode)
    assert source.mode == mode
    image = load_image(source)
    assert image.mode == "RGB" and image.size == (20, 10)


def test_transparency_is_flattened_onto_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (10, 20, 30, 255))
    rgb = np.asarray(load_image(rgba))
    assert tuple(rgb[0, 0]) == (10, 20, 30)
    assert tuple(rgb[3, 3]) == (255, 255, 255)
    la = Image.new("LA", (2, 2), (0, 0))
    assert tuple(np.asarray(load_image(la))[0, 0]) == (255, 255, 255)


def test_palette_transparency_is_flattened_onto_white(write_image):
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    path = write_image(palette, "p.png", transparency=0)
    rgb = np.asarray(load_image(path))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[0, 1]) == (200, 0, 0)


def test_sixteen_bit_grey_is_scaled_not_clipped(write_image):
    grey16 = Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16))
    mid = Image.fromarray(np.full((3, 3), 32896, dtype=np.uint16))  # 128 * 257
    assert tuple(np.asarray(load_image(grey16))[0, 0]) == (255, 255, 255)
    assert tuple(np.asarray(load_image(write_image(mid, "mid.png")))[0, 0]) == (128, 128, 128)


def test_exif_orientation_is_applied(write_image):
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 10))  # red square top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = write_image(image, "rotated.png", exif=exif)
    upright = load_image(path)
    assert upright.size == (20, 40)
    assert upright.getpixel((15, 5))[0] > 200 and upright.getpixel((5, 5)) == (255, 255, 255)
    assert DynamicResolution(tile_size=16).plan_in_sample(*upright.size, n_images=1).image_size == (20, 40)
    assert DynamicResolution(tile_size=16)(path).plan.image_size == (20, 40)


@pytest.mark.parametrize("size", [(1, 5000), (5000, 1)])
@pytest.mark.parametrize(
    "preprocessor", [FixedResize(tile_size=32), DynamicResolution(tile_size=32), MSAC(tile_size=32)]
)
def test_extreme_aspect_ratios_work(size, preprocessor):
    out = preprocessor(Image.new("RGB", size, (9, 9, 9)))
    assert out.tiles.shape[1:] == (3, 32, 32) and 1 <= out.n_tiles <= 13


def test_zero_byte_file_names_the_file(tmp_path: Path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.jpg: the file is empty"):
        DynamicResolution()(path)


def test_non_image_file_names_the_file(tmp_path: Path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    with pytest.raises(ImageLoadError, match=r"notes\.png: not an image file"):
        load_image(path)


def test_truncated_file_names_the_file(tmp_path: Path):
    buffer = io.BytesIO()
    noise_image(200, 200).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.jpg: corrupt or truncated"):
        MSAC(tile_size=32)(path)


def test_missing_file_names_the_file(tmp_path: Path):
    with pytest.raises(ImageLoadError, match=r"nowhere\.png: no such file"):
        load_image(tmp_path / "nowhere.png")


def test_pixel_limit_is_configurable_and_names_the_file(write_image):
    path = write_image(noise_image(100, 100), "big.png")
    with pytest.raises(ImageLoadError, match=r"big\.png: 100x100 = 10000 pixels is over the limit of 9999"):
        DynamicResolution(max_pixels=9999)(path)
    assert DynamicResolution(tile_size=32, max_pixels=10000)(path).n_tiles >= 1


def test_pil_bomb_guard_does_not_preempt_our_limit(write_image, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL alone would refuse a 100x100 image
    path = write_image(noise_image(100, 100), "fine.png")
    assert load_image(path).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 100  # and its global setting is restored
