"""The synthetic tasks: each draws one record (images, conversation, scoring hints) from a seeded RNG.

They mirror the paper's OCR and document focus. `text` deliberately includes small text in large,
wide or tall images, where squashing the image into one tile loses the characters, so the
preprocessor ablation has something to measure.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from h2ovl.synth.canvas import FONT_FILES, add_noise, font, ink_and_paper, random_font, text_patch, text_size
from h2ovl.synth.documents import DOCUMENTS, QUESTIONS

_WORDS = (
    "invoice total amount due date account number receipt subtotal tax paid cash card change order "
    "store price item name address city state license check bank payee balance credit debit"
).split()


@dataclass
class Drawn:
    images: list[Image.Image]
    question: str
    answer: str
    scorer: str
    """Which scorer fits the answer: "cer" (transcription / exact match), "kie" (JSON), "anls" (VQA)."""
    extra: dict = field(default_factory=dict)


def random_string(rng: random.Random) -> str:
    """A word, a number, or a code: what OCR benchmarks ask to read."""
    kind = rng.choice(("word", "number", "code", "words"))
    if kind == "word":
        return rng.choice(_WORDS)
    if kind == "number":
        return str(rng.randint(0, 10 ** rng.randint(2, 9)))
    if kind == "code":
        return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(rng.randint(4, 10)))
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 3)))


def text_recognition(rng: random.Random, max_side: int) -> Drawn:
    """A short string, placed anywhere on a canvas that may be large, wide or tall relative to the text."""
    text = random_string(rng)
    shape = rng.choice(("tight", "wide", "tall", "large"))
    size = rng.randint(10, 28) if shape == "tight" else rng.randint(8, 16)
    ink, paper = ink_and_paper(rng)
    patch = text_patch(text, random_font(rng, size), ink, rng.choice((0, 0, 0, rng.uniform(-8, 8))))
    pw, ph = patch.size
    if shape == "tight":
        width, height = pw + rng.randint(4, 40), ph + rng.randint(4, 20)
    elif shape == "wide":
        height = ph + rng.randint(4, 30)
        width = min(max_side, max(pw + 8, int(height * rng.uniform(4, 10))))
    elif shape == "tall":
        width = pw + rng.randint(8, 40)
        height = min(max_side, max(ph + 8, int(width * rng.uniform(2, 4))))
    else:
        width, height = rng.randint(max_side // 2, max_side), rng.randint(max_side // 2, max_side)
    width, height = max(width, pw + 2), max(height, ph + 2)
    image = Image.new("RGB", (width, height), paper)
    image.paste(patch, (rng.randint(0, width - pw), rng.randint(0, height - ph)), patch)
    question = rng.choice(("What is the text in the image?", "Read the text in the image.", "What is written here?"))
    return Drawn([add_noise(image, rng, rng.uniform(0, 10))], question, text, "cer", {"shape": shape})


def _digits_in_a_line(rng: random.Random, max_side: int, aspect: tuple[float, float], count: tuple[int, int]) -> Drawn:
    """One line of digits whose height is 40-50% of the canvas height, so that a view fitting the canvas's
    height into one tile (a single tile, or a row of tiles) shows them at the same scale whatever the
    aspect: 26-32 px tall in a 64 px tile. (At 22-31%, 14-20 px, the tiny demo model took 3-4x the steps to
    start reading: measured, see docs/results.md.)"""
    ink, paper = ink_and_paper(rng)
    points, face_file = rng.randint(18, 30), rng.choice(FONT_FILES)
    share, ratio = rng.uniform(0.40, 0.50), rng.uniform(*aspect)
    while True:  # a small max_side: smaller digits, never a cut or resized canvas
        face = font(points, face_file)
        digits_width, digits_height = text_size(face, string.digits)
        height = int(digits_height / share)
        width = int(height * ratio)
        if width <= max_side or points <= 6:
            break
        points -= 2
    fits = int((width - 2 * max(2, digits_height // 4) - 4) / (digits_width / 10))
    text = "".join(rng.choice(string.digits) for _ in range(rng.randint(count[0], max(count[0], min(count[1], fits)))))
    patch = text_patch(text, face, ink, 0)
    pw, ph = patch.size
    width, height = max(width, pw + 2), max(height, ph + 2)
    image = Image.new("RGB", (width, height), paper)
    image.paste(patch, (rng.randint(0, width - pw), rng.randint(0, height - ph)), patch)
    return Drawn(
        [add_noise(image, rng, rng.uniform(0, 6))],
        "What number is written in the image?",
        text,
        "cer",
        {"aspect": round(width / height, 2)},
    )


def digits_square(rng: random.Random, max_side: int) -> Drawn:
    """1 to as many digits as fit (median 2, 4 in most faces) on a canvas 0.9-1.4 times wider than tall:
    one tile under every preprocessor, so a first stage on it favours none of them."""
    return _digits_in_a_line(rng, max_side, (0.9, 1.4), (1, 10))


def digits_strip(rng: random.Random, max_side: int) -> Drawn:
    """3-8 digits at `digits_square`'s scale on a canvas 2.7-4.2 times wider than tall (the preprocessor
    ablation's test): a row of 3 tiles shows 8-16 px per digit, as `digits_square` taught (7-15);
    squashed into one tile, 3-5."""
    return _digits_in_a_line(rng, max_side, (2.7, 4.2), (3, 8))


def digits_sequence(rng: random.Random, max_side: int) -> Drawn:
    """2-4 near-square images of 1-2 digits each, at `digits_square`'s scale; the answer is all their
    digits in order, as one number. It teaches what a row of tiles asks of a reader (read on from one
    tile's tokens into the next's, 2-8 digits) without any tiling: each image is one tile under every
    preprocessor, so a first stage on it favours none of them."""
    parts = [_digits_in_a_line(rng, max_side, (0.9, 1.4), (1, 2)) for _ in range(rng.randint(2, 4))]
    lines = "".join(f"Image-{k}: <image>\n" for k in range(1, len(parts) + 1))
    return Drawn(
        [part.images[0] for part in parts],
        lines + "What number do the images show, read in order?",
        "".join(part.answer for part in parts),
        "cer",
        {"images": len(parts)},
    )


def page_transcription(rng: random.Random, max_side: int) -> Drawn:
    """Several lines of text on one page."""
    lines = [" ".join(random_string(rng) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(2, 5))]
    face = random_font(rng, rng.randint(10, 18))
    line_height = int(text_size(face, "Ag")[1] * 1.5) + 1
    width = min(max_side, max(text_size(face, line)[0] for line in lines) + rng.randint(16, 80))
    height = min(max_side, line_height * len(lines) + rng.randint(16, 80))
    ink, paper = ink_and_paper(rng)
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((8, 8 + i * line_height), line, font=face, fill=ink)
    return Drawn(
        [add_noise(image, rng, rng.uniform(0, 6))], "Transcribe all the text in the image.", "\n".join(lines), "cer"
    )


def key_information(rng: random.Random, max_side: int) -> Drawn:
    """A receipt, license or check; the answer is its fields as JSON."""
    kind = rng.choice(sorted(DOCUMENTS))
    image, fields = DOCUMENTS[kind](rng, rng.uniform(0.8, 1.4))
    keys = ", ".join(fields)
    question = f"Extract the fields of this {kind.replace('_', ' ')} as JSON with the keys: {keys}."
    return Drawn([image], question, json.dumps(fields, ensure_ascii=False), "kie", {"document": kind})


def document_vqa(rng: random.Random, max_side: int) -> Drawn:
    """A question about one field of a document."""
    kind = rng.choice(sorted(DOCUMENTS))
    image, fields = DOCUMENTS[kind](rng, rng.uniform(0.8, 1.4))
    question, key = rng.choice(QUESTIONS[kind])
    return Drawn([image], question, fields[key], "anls", {"document": kind})


def multi_image(rng: random.Random, max_side: int) -> Drawn:
    """Two images, one question about both."""
    first, second = text_recognition(rng, max_side // 2), text_recognition(rng, max_side // 2)
    question = "Image-1: <image>\nImage-2: <image>\nWhat is written in each image? Answer as: first | second."
    return Drawn(first.images + second.images, question, f"{first.answer} | {second.answer}", "cer")


def text_only(rng: random.Random, max_side: int) -> Drawn:
    """No image: arithmetic, spelling and JSON questions, so the LLM keeps its text skills."""
    kind = rng.choice(("sum", "reverse", "json"))
    if kind == "sum":
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        return Drawn([], f"What is {a} + {b}?", str(a + b), "cer")
    if kind == "reverse":
        word = rng.choice(_WORDS)
        return Drawn([], f"Spell the word '{word}' backwards.", word[::-1], "cer")
    key, value = rng.choice(_WORDS), random_string(rng)
    return Drawn([], f"Write a JSON object whose key '{key}' holds '{value}'.", json.dumps({key: value}), "kie")


#: task name -> drawer; `h2ovl synth --tasks` picks from these.
TASKS: dict[str, Callable[[random.Random, int], Drawn]] = {
    "text": text_recognition,
    "page": page_transcription,
    "kie": key_information,
    "docvqa": document_vqa,
    "multi_image": multi_image,
    "text_only": text_only,
    "digits_square": digits_square,
    "digits_strip": digits_strip,
    "digits_sequence": digits_sequence,
}
