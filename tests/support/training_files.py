"""Training data as it is published, written by the tests with the publishers' own tools: Hugging Face
datasets with `datasets` (`save_to_disk`, and `to_parquet` as the Hub's parquet files), in the schemas
VLM instruction sets use (InternVL/LLaVA `conversations` + `image`, chat `messages` + `images`, the_cauldron's
`texts` + `images`), and WebDataset shards with WebDataset's own `TarWriter`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def png(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def conversation_rows(n: int) -> list[dict]:
    """InternVL/LLaVA rows: one image each, every third with a system turn, every fourth two exchanges."""
    rows = []
    for i in range(n):
        turns = [
            {"from": "human", "value": f"<image>\nread line {i}"},
            {"from": "gpt", "value": f"line {i} says {i * 7}"},
        ]
        if i % 4 == 3:
            turns += [{"from": "human", "value": "and doubled?"}, {"from": "gpt", "value": str(i * 14)}]
        if i % 3 == 2:
            turns = [{"from": "system", "value": "You read documents."}, *turns]
        rows.append(
            {
                "id": f"row-{i}",
                "image": {"bytes": png(40 + 7 * (i % 5), 30 + 5 * (i % 3), i), "path": None},
                "conversations": turns,
            }
        )
    return rows


def _features(schema: str):
    from datasets import Features, List, Value
    from datasets import Image as ImageFeature

    if schema == "conversations":
        return Features(
            {
                "id": Value("string"),
                "image": ImageFeature(),
                "conversations": List({"from": Value("string"), "value": Value("string")}),
            }
        )
    if schema == "messages":
        part = {"type": Value("string"), "text": Value("string")}
        return Features(
            {"images": List(ImageFeature()), "messages": List({"role": Value("string"), "content": List(part)})}
        )
    return Features(
        {
            "images": List(ImageFeature()),
            "texts": List({"user": Value("string"), "assistant": Value("string"), "source": Value("string")}),
        }
    )


def hf_rows(schema: str, n: int) -> list[dict]:
    rows = conversation_rows(n)
    if schema == "conversations":
        return rows
    out = []
    for row in rows:
        turns = [t for t in row["conversations"] if t["from"] != "system"]
        pairs = [(turns[k]["value"].replace("<image>\n", ""), turns[k + 1]["value"]) for k in range(0, len(turns), 2)]
        if schema == "messages":
            messages = []
            for k, (question, answer) in enumerate(pairs):
                parts = ([{"type": "image", "text": None}] if k == 0 else []) + [{"type": "text", "text": question}]
                messages += [
                    {"role": "user", "content": parts},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                ]
            out.append({"images": [row["image"]], "messages": messages})
        else:  # the_cauldron
            out.append(
                {
                    "images": [row["image"]],
                    "texts": [{"user": q, "assistant": a, "source": "synthetic"} for q, a in pairs],
                }
            )
    return out


def write_hf_dataset(folder: Path, schema: str = "conversations", n: int = 12, layout: str = "save_to_disk") -> Path:
    """A `datasets.Dataset` saved with `save_to_disk`, or written as parquet shards (`data/train-0000k-of-00002.parquet`)."""
    from datasets import Dataset

    dataset = Dataset.from_list(hf_rows(schema, n), features=_features(schema))
    if layout == "save_to_disk":
        dataset.save_to_disk(str(folder))
        return folder
    (folder / "data").mkdir(parents=True)
    half = n // 2
    for k, part in enumerate((dataset.select(range(half)), dataset.select(range(half, n)))):
        part.to_parquet(str(folder / "data" / f"train-{k:05d}-of-00002.parquet"))
    return folder / "data"


def write_webdataset(folder: Path, n: int = 12, per_shard: int = 5) -> str:
    """Shards `train-000000.tar`, ... of `{key}.json` (the record, images left out) and `{key}.png`;
    every fifth sample carries two images (`0.png`, `1.png`). Returns the brace pattern naming them."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(folder / "train-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for row in conversation_rows(n):
            index = int(row["id"].split("-")[1])
            sample = {"__key__": f"{index:08d}", "json": {k: v for k, v in row.items() if k != "image"}}
            if index % 5 == 4:
                sample["json"]["conversations"][-2]["value"] += "\n<image>"  # the last question shows the second image
                sample["0.png"], sample["1.png"] = row["image"]["bytes"], png(33, 21, 1000 + index)
            else:
                sample["png"] = row["image"]["bytes"]
            sink.write(sample)
    shards = sorted(folder.glob("train-*.tar"))
    return str(folder / f"train-{{000000..{len(shards) - 1:06d}}}.tar")
