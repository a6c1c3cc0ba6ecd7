"""Opening image files safely: one place that turns a path, bytes or PIL image into an RGB image.

It applies the EXIF orientation, flattens transparency onto white, maps every PIL mode to 8-bit RGB
and refuses files that are empty, truncated, not images or larger than a pixel limit, with an error
that names the file and the cause. It does no resizing: that is the preprocessors' job.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from h2ovl.errors import UserError

ImageSource = str | os.PathLike | bytes | Image.Image

#: Default decoded-size limit: 16k x 16k pixels. Far above any document page at 600 dpi, and far
#: below what would exhaust a data-loader worker's memory.
DEFAULT_MAX_PIXELS = 16384 * 16384

# EXIF orientations 5..8 rotate by 90 degrees, so the stored width and height swap on display.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION_TAG = 0x0112


class ImageLoadError(UserError, ValueError):
    """An image could not be used; the message names the file and the cause."""

    def __init__(self, source: str, cause: str) -> None:
        super().__init__(f"{source}: {cause}")
        self.source = source
        self.cause = cause


def describe_source(source: ImageSource) -> str:
    """A short name for error messages: the path, or what kind of in-memory object it was."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return getattr(source, "filename", "") or "<PIL image>"


def open_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open lazily (header only) and check the size; pixels are decoded later by `decode_rgb`."""
    name = describe_source(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise ImageLoadError(name, "a folder, not an image file" if path.is_dir() else "no such file")
            if path.stat().st_size == 0:
                raise ImageLoadError(name, "the file is empty (0 bytes)")
            try:
                stream: io.BufferedIOBase | io.BytesIO = io.BytesIO(path.read_bytes())
            except OSError as error:  # permission denied, an I/O error
                raise ImageLoadError(name, f"cannot be read: {error.strerror or error}") from None
        else:
            if not source:
                raise ImageLoadError(name, "the image data is empty (0 bytes)")
            stream = io.BytesIO(source)
        try:
            # Our own pixel limit replaces PIL's decompression-bomb guard, which would warn or raise
            # with a message that does not name the file.
            with _without_pil_bomb_guard():
                image = Image.open(stream)
        except UnidentifiedImageError:
            raise ImageLoadError(name, "not an image file (no decoder recognised it)") from None
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageLoadError(name, f"unreadable image header ({err})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageLoadError(name, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageLoadError(
            name, f"{width}x{height} = {width * height} pixels is over the limit of {max_pixels} (max_pixels)"
        )
    return image


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed, i.e. after the EXIF orientation is applied; reads the header only."""
    width, height = image.size
    return (height, width) if _orientation(image) in _TRANSPOSING_ORIENTATIONS else (width, height)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not make the image unusable; it is then ignored
        return 1


def request_reduced_decode(image: Image.Image, min_display_size: tuple[int, int]) -> None:
    """Ask the JPEG decoder to decode at 1/2, 1/4 or 1/8 scale while staying >= `min_display_size`.

    This is the opt-in fast path: decoding fewer pixels is the cheapest speed-up there is, at the cost
    of a slightly different (DCT-domain) downscale. No-op for formats without a reduced decode.
    """
    if image.format != "JPEG":
        return
    width, height = min_display_size
    if oriented_size(image) != image.size:
        width, height = height, width
    image.draft("RGB", (width, height))


def decode_rgb(image: Image.Image, source_name: str | None = None) -> Image.Image:
    """Decode the pixels and return an 8-bit RGB image, upright, transparency flattened onto white."""
    name = source_name or describe_source(image)
    try:
        image.load()
        if _orientation(image) != 1:  # exif_transpose copies even when there is nothing to do
            image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageLoadError(name, f"corrupt or truncated image data ({err})") from None
    return _to_rgb(image)


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, check and decode in one call."""
    return decode_rgb(open_image(source, max_pixels), describe_source(source))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P":
        # Palette images may carry transparency in the palette or as a tRNS index.
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_bit_depth_to_rgb(image)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    raise ImageLoadError(describe_source(image), f"unsupported image mode {mode!r}")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit and float grey images to 8 bits (PIL's own convert clips them instead)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0  # [0, 1] floats or 0..255 floats
    elif image.mode == "I" and values.max(initial=0.0) <= 255:
        scale = 1.0  # 8-bit data stored in 32-bit integers
    else:
        scale = 255.0 / 65535.0  # 16-bit data
    grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


@contextlib.contextmanager
def _without_pil_bomb_guard() -> Iterator[None]:
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved
