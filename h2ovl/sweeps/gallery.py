"""An ablation's gallery: a few held-out images, the grids each variant's preprocessor cut them into, and
every variant's answer against the truth, in one PNG.

The table says how often each variant is right; the gallery shows what its errors look like and what each
preprocessor showed the model. Each variant is represented by one trial (the sweep's first seed): its last
checkpoint answers the first held-out samples greedily, through the same code as `h2ovl evaluate`.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from h2ovl.data.datamodule import SyntheticData
from h2ovl.data.meta import load_mixture
from h2ovl.data.sources import open_source
from h2ovl.evaluate import load_module, predict
from h2ovl.preprocessing import ImagePreprocessor
from h2ovl.preprocessing.image_io import load_image
from h2ovl.preprocessing.preview import draw_grids
from h2ovl.scoring.prediction_files import read_predictions

_PANEL_HEIGHT = 56
_LINE = 15
_ANSWER_CHARS = 32
_PAD = 10
_RIGHT, _WRONG, _INK = (20, 130, 40), (200, 30, 30), (20, 20, 20)


@dataclass
class Shown:
    """One held-out sample: its image, the truth, and each variant's answer."""

    image: Image.Image | None
    """The first image of the sample (None: a text-only sample)."""
    truth: str
    answers: dict[str, str]


def held_out_data(config: dict[str, Any]) -> str | None:
    """The validation data of a trial's resolved config: `data.val`, else its synthetic data's validation
    split; None when it has neither."""
    data = config.get("data") or {}
    if data.get("val") or data.get("train"):
        return data.get("val")
    split = SyntheticData(**(data.get("synthetic") or {})).ensure().get("val")
    return str(split) if split else None


def preprocessor_label(preprocessor: ImagePreprocessor) -> str:
    """`fixed 64px`, `dynamic 64px <=4 tiles`, `msac 64px <=4 tiles +thumbnail`: what tells two preprocessors
    of a sweep apart (the gallery draws each distinct one once)."""
    name = type(preprocessor).__name__.replace("Resolution", "").replace("Resize", "").lower()
    budget = getattr(preprocessor, "max_tiles", 1)
    thumbnail = " +thumbnail" if getattr(preprocessor, "use_thumbnail", False) and budget > 1 else ""
    return f"{name} {preprocessor.tile_size}px" + (f" <={budget} tiles" if budget > 1 else "") + thumbnail


def collect(
    checkpoints: dict[str, Path], data: str, samples: int, max_new_tokens: int = 32
) -> tuple[list[Shown], dict[str, ImagePreprocessor]]:
    """Each variant's answers to the first `samples` records of `data`, and the distinct preprocessors."""
    shown: list[Shown] = []
    ids: list[str] = []
    for spec in load_mixture(data):  # the order `h2ovl evaluate` reads them in
        source = open_source(spec)
        for index in range(min(samples - len(shown), len(source))):
            record, images = source.load(index)
            image = load_image(images[0]) if images else None
            shown.append(Shown(image, record.reference.get("answer", record.turns[0][1]), {}))
            ids.append(record.id)
    preprocessors: dict[str, ImagePreprocessor] = {}
    # Lightning announces each Trainer (accelerators, tips): one per variant would bury the table above.
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for variant, checkpoint in checkpoints.items():
                module, _ = load_module(str(checkpoint), None, max_new_tokens)
                path = Path(scratch) / f"{len(shown[0].answers) if shown else 0}.jsonl"
                predict(module, data, path, limit=len(shown), progress=False)
                answers = {record.id: record.prediction for record in read_predictions(path)}
                for sample, sample_id in zip(shown, ids):
                    sample.answers[variant] = answers.get(sample_id, "(skipped)")
                preprocessors.setdefault(preprocessor_label(module.preprocessor), module.preprocessor)
    finally:
        lightning_log.setLevel(level)
    return shown, preprocessors


def draw(shown: list[Shown], preprocessors: dict[str, ImagePreprocessor], title: str) -> Image.Image:
    """One row per sample: the image under each preprocessor's grids, then the truth and every answer
    (green when exact, red otherwise, with its CER)."""
    font = ImageFont.load_default(size=13)
    rows = []
    for sample in shown:
        panels = []
        for label, preprocessor in preprocessors.items() if sample.image is not None else ():
            grids = preprocessor(sample.image).plan.grids
            panel = draw_grids(sample.image, grids, _PANEL_HEIGHT, legend=False)
            shown_grids = {k: v for k, v in grids.items() if not (k == "grid" and len(grids) > 1)}
            label = f"{label.split()[0]}: " + " + ".join(f"{k} {g.cols}x{g.rows}" for k, g in shown_grids.items())
            caption = int(ImageDraw.Draw(panel).textlength(label, font=font)) + 4
            captioned = Image.new("RGB", (max(panel.width, caption), panel.height + _LINE), "white")
            captioned.paste(panel, (0, _LINE))
            ImageDraw.Draw(captioned).text((0, 0), label, fill=_INK, font=font)
            panels.append(captioned)
        names = max(len(v) for v in sample.answers) if sample.answers else 0
        lines = [(f"{'truth':<{names}}  {sample.truth}", _INK)]
        for variant, answer in sample.answers.items():
            cer = Levenshtein.distance(answer, sample.truth) / max(1, len(sample.truth))
            text = answer if len(answer) <= _ANSWER_CHARS else answer[:_ANSWER_CHARS] + "..."
            lines.append(
                (
                    f"{variant:<{names}}  {text or '(empty)'}  CER {cer:.2f}",
                    _RIGHT if answer == sample.truth else _WRONG,
                )
            )
        width = sum(p.width for p in panels) + _PAD * (len(panels) + 1) + 420
        height = max([p.height for p in panels] + [_LINE * len(lines)]) + _PAD
        row = Image.new("RGB", (width, height), "white")
        x = _PAD
        for panel in panels:
            row.paste(panel, (x, 0))
            x += panel.width + _PAD
        text = ImageDraw.Draw(row)
        mono = _mono(13)
        for k, (line, colour) in enumerate(lines):
            text.text((x, k * _LINE), line, fill=colour, font=mono)
        rows.append(row)
    width = max(r.width for r in rows) if rows else 400
    canvas = Image.new("RGB", (width, sum(r.height for r in rows) + 2 * _LINE + _PAD), "white")
    ImageDraw.Draw(canvas).text((_PAD, 4), title, fill=_INK, font=font)
    y = 2 * _LINE
    for row in rows:
        canvas.paste(row, (0, y))
        ImageDraw.Draw(canvas).line([(0, y + row.height - 3), (width, y + row.height - 3)], fill=(220, 220, 220))
        y += row.height
    return canvas


def _mono(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Answers line up in a monospaced face where one is installed; Pillow's own font otherwise.
    try:
        return ImageFont.truetype("DejaVuSansMono.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def write_gallery(checkpoints: dict[str, Path], data: str, out: Path, samples: int = 6, title: str = "") -> Path:
    """The gallery PNG at `out`: the first `samples` held-out records of `data`, answered by each variant's
    checkpoint (`checkpoints`: variant -> Lightning checkpoint)."""
    shown, preprocessors = collect(checkpoints, data, samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw(shown, preprocessors, title or f"{len(shown)} held-out samples of {Path(data).name}").save(out)
    return out
