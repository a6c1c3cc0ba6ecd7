"""Synthetic OCR and document data (the embedded default): images plus an InternVL meta file.

`write_synthetic(out, n, seed)` writes `images/`, one jsonl per task and split, `meta.json` (train),
`meta_val.json` (validation) and `meta_test.json` (test), the same for the same seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from h2ovl.errors import SettingError
from h2ovl.synth.tasks import TASKS, Drawn

__all__ = ["GENERATOR_VERSION", "TASKS", "write_synthetic"]

#: Part of the name of the folder the data module writes synthetic data to (`SyntheticData.folder`):
#: raise it with any change that alters what a (seed, n, tasks) draws, so old folders are not reused.
GENERATOR_VERSION = 4  # 4: meta files find their paths beside themselves (relative_to: meta)


def _record(drawn: Drawn, task: str, index: int, split: str, image_paths: list[str]) -> dict:
    question = drawn.question
    if drawn.images and "<image>" not in question:
        question = "<image>\n" + question
    record = {
        "id": f"{task}-{split}-{index}",
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": drawn.answer}],
        "task": task,
        "scorer": drawn.scorer,
        **drawn.extra,
    }
    if image_paths:
        record["image"] = image_paths[0] if len(image_paths) == 1 else image_paths
    return record


def write_synthetic(
    out: str | Path,
    n: int,
    seed: int = 0,
    tasks: Sequence[str] | None = None,
    test_fraction: float = 0.1,
    max_side: int = 768,
) -> dict[str, Path]:
    """Write `n` samples (split over `tasks`, `test_fraction` of each held out as the test split), plus
    a validation split of the test split's size drawn apart (so the training split is the same with or
    without it). Returns the meta files by split ("train", "val", "test").

    Each sample is drawn from its own RNG seeded by (seed, task, split, index), so growing `n` keeps the
    earlier samples and a held-out sample never depends on the training ones.
    """
    tasks = list(tasks or TASKS)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise SettingError(f"unknown synthetic tasks {unknown}; choose from {sorted(TASKS)}")
    if n < len(tasks):
        raise SettingError(f"n={n} is less than one sample per task ({len(tasks)} tasks)")
    out = Path(out)
    metas: dict[str, dict] = {"train": {}, "val": {}, "test": {}}
    per_task = n // len(tasks)
    for task in tasks:
        n_test = max(1, int(round(per_task * test_fraction))) if test_fraction > 0 else 0
        for split, count in (("train", per_task - n_test), ("val", n_test), ("test", n_test)):
            if count <= 0:
                continue
            image_dir = out / "images" / task / split
            image_dir.mkdir(parents=True, exist_ok=True)
            annotation = out / f"{task}_{split}.jsonl"
            with annotation.open("w", encoding="utf-8") as file:
                for index in range(count):
                    drawn = TASKS[task](random.Random(f"{seed}/{task}/{split}/{index}"), max_side)
                    paths = []
                    for k, image in enumerate(drawn.images):
                        relative = f"{task}/{split}/{index}_{k}.png"
                        image.save(out / "images" / relative)
                        paths.append(relative)
                    file.write(json.dumps(_record(drawn, task, index, split, paths), ensure_ascii=False) + "\n")
            metas[split][task] = {
                "root": "images",
                "annotation": annotation.name,
                "relative_to": "meta",
                "repeat_time": 1.0,
                "length": count,
            }
    written = {}
    for split, name in (("train", "meta.json"), ("val", "meta_val.json"), ("test", "meta_test.json")):
        if metas[split]:
            (out / name).write_text(json.dumps(metas[split], indent=2) + "\n", encoding="utf-8")
            written[split] = out / name
    return written
