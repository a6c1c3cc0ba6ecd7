"""Benchmark files laid out as they are distributed, written by the tests themselves (no download): the
official release files with their image folders, VLMEvalKit's TSVs (written with pandas, as VLMEvalKit's
are, base64 images, an image shared by index reference, list answers as Python literals), and the
Hugging Face parquet mirrors (pyarrow with the `datasets` feature metadata, images as {bytes, path}
structs, two row groups). Field names and types follow the upstream files and loaders field for field."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

OCRBENCH_TYPES = ("Regular Text Recognition", "Doc-oriented VQA", "Handwritten Mathematical Expression Recognition")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    category: str | None
    size: tuple[int, int]
    """The image's (width, height): every question's image differs, so a mix-up shows."""


def questions(benchmark: str, n: int = 3) -> list[Question]:
    out = []
    for i in range(n):
        size = (60 + 20 * i, 40 + 10 * i)
        question = f'What is\tthe "total" on line {i}?' if i == 1 else f"What is written in image {i}?"
        if benchmark == "ocrbench":
            out.append(
                Question(
                    str(i), question, [f"WORD{i}"] if i % 2 else [f"word{i}", f"w{i}"], OCRBENCH_TYPES[i % 3], size
                )
            )
        elif benchmark == "textvqa":
            out.append(Question(str(34602 + i), question, [f"ans{i}"] * 7 + ["other"] * 3, None, size))
        elif benchmark in ("docvqa", "infovqa"):
            out.append(Question(str(49153 + i), question, [f"{i}.50", f"${i}.50"], None, size))
        else:  # chartqa: human questions first, then augmented, as both upstream loaders order them
            out.append(
                Question(
                    f"{'human' if i < (n + 1) // 2 else 'augmented'}/{i}",
                    question,
                    [str(10 * i + 1)],
                    "human" if i < (n + 1) // 2 else "augmented",
                    size,
                )
            )
    return out


def ocrbench_result(predict: str, answers: list[str] | str, category: str, position: int = 0) -> dict:
    """One record of the result list OCRBench's own evaluation script writes (`predict` beside the question)."""
    return {
        "dataset_name": "IIIT5K",
        "id": position,
        "question": "what is written?",
        "answers": answers,
        "type": category,
        "predict": predict,
    }


def image_bytes(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(size[0])
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


# -- official release files -----------------------------------------------------------------------------
def write_official(benchmark: str, root: Path, n: int = 3) -> Path:
    """The release as it unpacks under `root`; returns what a user names (the file, or ChartQA's test folder)."""
    qs = questions(benchmark, n)
    root.mkdir(parents=True, exist_ok=True)
    if benchmark == "ocrbench":  # MultimodalOCR: OCRBench/OCRBench.json beside OCRBench_Images/
        items = []
        for q in qs:
            rel = f"IIIT5K/test/{q.id}_1.png"
            (root / "OCRBench_Images" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "OCRBench_Images" / rel).write_bytes(image_bytes(q.size))
            items.append(
                {
                    "dataset_name": "IIIT5K",
                    "id": 2843 + int(q.id) % 2,
                    "image_path": rel,
                    "question": q.question,
                    "answers": q.answers[0] if len(q.answers) == 1 else q.answers,
                    "type": q.category,
                }
            )
        path = root / "OCRBench" / "OCRBench.json"
        path.parent.mkdir()
        path.write_text(json.dumps(items, indent=4))
        return path
    if benchmark == "textvqa":
        (root / "train_images").mkdir()
        data = []
        for q in qs:
            image_id = f"003a8ae2ef43b9{q.id[-2:]}"
            (root / "train_images" / f"{image_id}.jpg").write_bytes(image_bytes(q.size, "JPEG"))
            data.append(
                {
                    "question": q.question,
                    "image_id": image_id,
                    "image_classes": ["Vehicle"],
                    "flickr_original_url": "",
                    "flickr_300k_url": "",
                    "image_width": q.size[0],
                    "image_height": q.size[1],
                    "answers": q.answers,
                    "question_tokens": q.question.split(),
                    "question_id": int(q.id),
                    "set_name": "val",
                }
            )
        path = root / "TextVQA_0.5.1_val.json"
        path.write_text(
            json.dumps({"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data})
        )
        return path
    if benchmark == "docvqa":
        (root / "val" / "documents").mkdir(parents=True)
        data = []
        for q in qs:
            name = f"pybv0228_8{q.id[-1]}.png"
            (root / "val" / "documents" / name).write_bytes(image_bytes(q.size))
            data.append(
                {
                    "questionId": int(q.id),
                    "question": q.question,
                    "question_types": ["figure/diagram"],
                    "image": f"documents/{name}",
                    "docId": 14465,
                    "ucsf_document_id": "pybv0228",
                    "ucsf_document_page_no": "81",
                    "answers": q.answers,
                    "data_split": "val",
                }
            )
        path = root / "val" / "val_v1.0_withQT.json"
        path.write_text(
            json.dumps({"dataset_name": "docvqa", "dataset_split": "val", "dataset_version": "1.0", "data": data})
        )
        return path
    if benchmark == "infovqa":
        (root / "infographicsvqa_images").mkdir()
        data = []
        for q in qs:
            name = f"3731{q.id[-1]}.jpeg"
            (root / "infographicsvqa_images" / name).write_bytes(image_bytes(q.size, "JPEG"))
            data.append(
                {
                    "questionId": int(q.id),
                    "question": q.question,
                    "image_local_name": name,
                    "image_url": "",
                    "ocr_output_file": name.replace(".jpeg", ".json"),
                    "answers": q.answers,
                    "data_split": "val",
                    "answer_type": ["single span"],
                    "evidence": ["Text"],
                    "operation/reasoning": [],
                }
            )
        path = root / "infographicsVQA_val_v1.0_withQT.json"
        path.write_text(
            json.dumps(
                {"dataset_name": "infographicVQA", "dataset_version": "1.0", "dataset_split": "val", "data": data}
            )
        )
        return path
    # ChartQA: "ChartQA Dataset/test/" holds test_human.json, test_augmented.json and png/
    test = root / "ChartQA Dataset" / "test"
    (test / "png").mkdir(parents=True)
    for split in ("human", "augmented"):
        items = []
        for q in (q for q in qs if q.category == split):
            name = f"4169905100534{q.id[-1]}.png"
            (test / "png" / name).write_bytes(image_bytes(q.size))
            items.append({"imgname": name, "query": q.question, "label": q.answers[0]})
        (test / f"test_{split}.json").write_text(json.dumps(items))
    return test


# -- VLMEvalKit TSV -----------------------------------------------------------------------------------------
VLMEVALKIT_NAMES = {
    "ocrbench": "OCRBench",
    "textvqa": "TextVQA_VAL",
    "docvqa": "DocVQA_VAL",
    "infovqa": "InfoVQA_VAL",
    "chartqa": "ChartQA_TEST",
}


def write_vlmevalkit(benchmark: str, folder: Path, n: int = 3) -> Path:
    """`<LMUData>/<Name>.tsv`: the last question shares the first one's image by index reference."""
    import pandas as pd

    qs = questions(benchmark, n)
    rows = []
    for i, q in enumerate(qs):
        image = base64.b64encode(image_bytes(q.size, "JPEG")).decode("ascii")
        row = {
            "index": i,
            "image": str(0) if i == n - 1 and n > 1 else image,
            "question": q.question,
            "answer": str(q.answers) if benchmark in ("ocrbench", "textvqa", "docvqa", "infovqa") else q.answers[0],
        }
        if benchmark == "ocrbench":
            row["category"] = q.category
        if benchmark == "chartqa":
            row["split"] = f"test_{q.category}"
        rows.append(row)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{VLMEVALKIT_NAMES[benchmark]}.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


# -- Hugging Face parquet -----------------------------------------------------------------------------------
def _features(benchmark: str) -> dict:
    text, seq, image = (
        {"dtype": "string", "_type": "Value"},
        {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
        {"_type": "Image"},
    )
    if benchmark == "ocrbench":
        return {"dataset": text, "question": text, "question_type": text, "answer": seq, "image": image}
    if benchmark == "textvqa":
        i32 = {"dtype": "int32", "_type": "Value"}
        return {
            "image_id": text,
            "question_id": i32,
            "question": text,
            "question_tokens": seq,
            "image": image,
            "image_width": i32,
            "image_height": i32,
            "flickr_original_url": text,
            "flickr_300k_url": text,
            "answers": seq,
            "image_classes": seq,
            "set_name": text,
            "ocr_tokens": seq,
        }
    if benchmark == "docvqa":
        return {
            "questionId": text,
            "question": text,
            "question_types": seq,
            "image": image,
            "docId": {"dtype": "int64", "_type": "Value"},
            "ucsf_document_id": text,
            "ucsf_document_page_no": text,
            "answers": seq,
            "data_split": text,
        }
    if benchmark == "infovqa":
        return {
            "questionId": text,
            "question": text,
            "answers": seq,
            "answer_type": seq,
            "image": image,
            "image_url": text,
            "operation/reasoning": seq,
            "ocr": text,
            "data_split": text,
        }
    return {"type": text, "question": text, "answer": text, "image": image}


def _hf_row(benchmark: str, q: Question, position: int) -> dict:
    image = {"bytes": image_bytes(q.size, "JPEG"), "path": None}
    if benchmark == "ocrbench":
        return {
            "dataset": "IIIT5K",
            "question": q.question,
            "question_type": q.category,
            "answer": q.answers,
            "image": image,
        }
    if benchmark == "textvqa":
        return {
            "image_id": f"img{position}",
            "question_id": int(q.id),
            "question": q.question,
            "question_tokens": q.question.split(),
            "image": image,
            "image_width": q.size[0],
            "image_height": q.size[1],
            "flickr_original_url": "",
            "flickr_300k_url": "",
            "answers": q.answers,
            "image_classes": ["Vehicle"],
            "set_name": "val",
            "ocr_tokens": ["ans"],
        }
    if benchmark == "docvqa":
        return {
            "questionId": q.id,
            "question": q.question,
            "question_types": ["form"],
            "image": image,
            "docId": 14465,
            "ucsf_document_id": "pybv0228",
            "ucsf_document_page_no": "81",
            "answers": q.answers,
            "data_split": "val",
        }
    if benchmark == "infovqa":
        return {
            "questionId": q.id,
            "question": q.question,
            "answers": q.answers,
            "answer_type": ["single span"],
            "image": image,
            "image_url": "",
            "operation/reasoning": [],
            "ocr": "",
            "data_split": "val",
        }
    return {"type": f"{q.category}_test", "question": q.question, "answer": q.answers[0], "image": image}


def write_hf_parquet(benchmark: str, folder: Path, n: int = 3, split: str = "validation") -> Path:
    """`<repo>/<config or data>/<split>-00000-of-00001.parquet`, as `datasets.push_to_hub` writes it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    split = "test" if benchmark in ("ocrbench", "chartqa") else split
    rows = [_hf_row(benchmark, q, i) for i, q in enumerate(questions(benchmark, n))]
    features = _features(benchmark)
    types = {"Value": {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64()}}
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

    def arrow_type(feature: dict) -> pa.DataType:
        if feature["_type"] == "Image":
            return image_type
        if feature["_type"] == "Sequence":
            return pa.list_(pa.string())
        return types["Value"][feature["dtype"]]

    schema = pa.schema(
        [(name, arrow_type(f)) for name, f in features.items()],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    sub = {"docvqa": "DocVQA", "infovqa": "InfographicVQA"}.get(benchmark, "data")
    path = folder / sub / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=2)  # two row groups: rows are found across them
    return path.parent
