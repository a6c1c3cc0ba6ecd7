"""`h2ovl evaluate`: batched greedy generation over a benchmark or test split, scored, written and tracked.

The data is a meta file or jsonl of records, or a benchmark as distributed (`h2ovl.data.benchmarks`:
OCRBench, TextVQA, DocVQA, InfographicVQA, ChartQA as official files, VLMEvalKit TSVs or Hugging Face
parquet), its questions worded as the chosen protocol words them (`plain`, or `vlmevalkit`: the paper's).
Writes `<out>/predictions.jsonl` (one scored record per sample under the benchmark's own id, readable by
`h2ovl score`), `<out>/scores.json`, `<out>/summary.csv` and `summary.md` (every metric, overall and per
category or split), and for TextVQA, DocVQA and InfographicVQA `<out>/submission.json` in the format their
evaluation servers take; it logs the scores as `eval/<data>/<task>/<metric>` and the files as artifacts
to MLflow: into the training run of a `--ckpt` (its run id rides in the checkpoint), else a new run.
Multi-image samples follow the model's own rule: a checkpoint trained here splits the tile budget across
a sample's images as it was trained; a released model gives each image the whole budget (MSAC off), as
the released inference code does.
Generation runs under Lightning's `Trainer.predict` (device placement, precision) on one device.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from h2ovl.argument_groups import as_group
from h2ovl.data.batching import Batching
from h2ovl.data.benchmarks import BenchmarkSource, open_benchmark, protocol
from h2ovl.data.datamodule import H2OVLDataModule
from h2ovl.data.sources import RecordSource
from h2ovl.errors import SettingError
from h2ovl.scoring.prediction_files import read_predictions
from h2ovl.scoring.tasks import AUTO, Scored, score_samples
from h2ovl.training.generation import PredictionWriter
from h2ovl.training.module import H2OVLModule
from h2ovl.training.settings import Initialization
from h2ovl.training.sharded import is_sharded_checkpoint
from h2ovl.training.tracking import MLflowTracker, checkpoint_run_id
from h2ovl.training.weights import allowed_globals, load_checkpoint, load_checkpoint_meta

log = logging.getLogger(__name__)


#: the answer budget when neither the command nor the protocol sets one
DEFAULT_MAX_NEW_TOKENS = 64


@dataclass
class EvaluationRequest:
    data: str
    """A meta file, a jsonl of records (conversations, or `question` + `answers`), or a benchmark file."""
    ckpt: str | None = None
    released: str | None = None
    task: str = AUTO
    limit: int | None = None
    batch_size: int = 8
    max_new_tokens: int | None = None
    """None: the protocol's budget, else `DEFAULT_MAX_NEW_TOKENS`."""
    benchmark: str | None = None
    """The benchmark a file holds, where its layout does not tell (`h2ovl.data.benchmarks.BENCHMARKS`)."""
    images: str | None = None
    """The image folder of an official release file, where it is not beside the file."""
    protocol: str = "plain"
    max_length: int = 4096
    precision: str | None = None
    """Lightning precision; None: bf16-mixed on a GPU, 32 on CPU."""
    out: str | None = None
    experiment: str = "evaluate"
    tracking_uri: str | None = None
    scorer_options: dict[str, dict] | None = None
    """Per task, its metric's options (`TaskScorer`) over the protocol's; None: the protocol's readings."""


def load_module(ckpt: str | None, released: str | None, max_new_tokens: int) -> tuple[H2OVLModule, str | None]:
    """The model to evaluate and the MLflow run it belongs to (a checkpoint's training run, if any)."""
    if (ckpt is None) == (released is None):
        raise SettingError("give exactly one of --ckpt (a Lightning checkpoint) or --released (a model directory)")
    if released is not None:
        return H2OVLModule(init=Initialization(released=released), max_new_tokens=max_new_tokens), None
    path = Path(ckpt)
    run_id = checkpoint_run_id(path)  # checks the file first: it exists, reads, and holds only data
    source: Path | io.BytesIO = path
    if is_sharded_checkpoint(path):  # Lightning reads files: the weights and settings, consolidated in memory
        checkpoint = load_checkpoint(path)
        source = io.BytesIO()
        torch.save({k: v for k, v in checkpoint.items() if k != "optimizer_states"}, source)
        source.seek(0)
    # The checkpoint a stage started from is not read again: this checkpoint's own weights are loaded right
    # after construction.
    trained_init = as_group(Initialization, load_checkpoint_meta(path).get("hyper_parameters", {}).get("init"))
    with torch.serialization.safe_globals(allowed_globals()):
        module = H2OVLModule.load_from_checkpoint(
            source,
            map_location="cpu",
            weights_only=True,
            init=dataclasses.asdict(dataclasses.replace(trained_init, checkpoint=None)),  # the form either saver takes
            max_new_tokens=max_new_tokens,
        )
    return module, run_id


def data_name(request: EvaluationRequest, source: BenchmarkSource | None) -> str:
    """The benchmark's name, else the data file's stem: the folder and MLflow key of its scores."""
    return source.benchmark.name if source is not None else Path(request.data).stem


def default_out(request: EvaluationRequest, source: BenchmarkSource | None = None) -> Path:
    """`outputs/eval/<run>-<checkpoint>-<data>`: two runs' `last.ckpt` never share a folder."""
    if request.ckpt:
        ckpt = Path(request.ckpt).resolve()
        run = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.parent.name
        model = f"{run}-{ckpt.stem}"
    else:
        model = Path(request.released).resolve().name
    return Path("outputs/eval") / f"{model}-{data_name(request, source)}"


def predict(
    module: H2OVLModule,
    data: str,
    path: Path,
    limit: int | None = None,
    batch_size: int = 8,
    max_length: int = 4096,
    split_budget: bool = True,
    precision: str | None = None,
    progress: bool = True,
    sources: list[RecordSource] | None = None,
) -> PredictionWriter:
    """Greedy answers of `module` to the first `limit` samples of `data` (or of `sources` opened from it),
    written to `path` (JSON Lines); the writer holds the counts of samples skipped as bad. `precision`
    None: bf16-mixed on a GPU, 32 on CPU."""
    path.parent.mkdir(parents=True, exist_ok=True)
    datamodule = H2OVLDataModule(batching=Batching(val_batch_size=batch_size, max_length=max_length))
    datamodule.bind(module.processor)
    loader = datamodule.eval_dataloader(data, limit, split_budget=split_budget, sources=sources)
    writer = PredictionWriter(str(path))
    precision = precision or ("bf16-mixed" if torch.cuda.is_available() else "32-true")
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        precision=precision,
        logger=False,
        callbacks=[writer],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        default_root_dir=str(path.parent),
    )
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    return writer


def evaluate(request: EvaluationRequest) -> dict[str, Any]:
    how = protocol(request.protocol)
    source = open_benchmark(request.data, request.benchmark, request.images, request.protocol)
    max_new_tokens = request.max_new_tokens or how.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    module, run_id = load_module(request.ckpt, request.released, max_new_tokens)
    out = Path(request.out) if request.out else default_out(request, source)
    writer = predict(
        module,
        request.data,
        out / "predictions.jsonl",
        request.limit,
        request.batch_size,
        request.max_length,
        split_budget=request.released is None,
        precision=request.precision,
        sources=[source] if source is not None else None,
    )
    samples = read_predictions(out / "predictions.jsonl")
    options = {
        task: {**how.scorer_options.get(task, {}), **(request.scorer_options or {}).get(task, {})}
        for task in {*how.scorer_options, *(request.scorer_options or {})}
    }
    scores: dict[str, Any] = score_samples(samples, request.task, options)
    scores["skipped"] = sum(writer.skipped.values())
    if writer.skipped:
        scores["skipped_by_reason"] = dict(writer.skipped)
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    name = data_name(request, source)
    write_summary(out, name, request.protocol, scores)
    if source is not None and source.benchmark.submission_id and source.rows.own_ids:
        write_submission(out / "submission.json", source.benchmark.submission_id, samples)
    scores["run_id"] = track(request, name, options, scores, out, run_id)
    scores["predictions"] = str(out / "predictions.jsonl")
    return scores


def write_summary(out: Path, name: str, protocol_name: str, scores: dict[str, Any]) -> None:
    """`summary.csv` (benchmark, protocol, metric, value) and the same as a Markdown table."""
    rows = [
        (name, protocol_name, key, float(value)) for key, value in scores.items() if isinstance(value, (int, float))
    ]
    with (out / "summary.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["benchmark", "protocol", "metric", "value"])
        writer.writerows(rows)
    table = ["| benchmark | protocol | metric | value |", "|---|---|---|---|"]
    table += [
        f"| {b} | {p} | {m} | {v:.4f} |" if not float(v).is_integer() else f"| {b} | {p} | {m} | {int(v)} |"
        for b, p, m, v in rows
    ]
    (out / "summary.md").write_text("\n".join(table) + "\n", encoding="utf-8")


def write_submission(path: Path, id_field: str, samples: list[Scored]) -> None:
    """`[{<id_field>: id, "answer": prediction}]`, as the benchmark's evaluation server takes it."""
    entries = [{id_field: int(s.id) if s.id.isdigit() else s.id, "answer": s.prediction} for s in samples]
    path.write_text(json.dumps(entries, ensure_ascii=False) + "\n", encoding="utf-8")


def track(
    request: EvaluationRequest,
    name: str,
    options: dict[str, dict],
    scores: dict[str, Any],
    out: Path,
    run_id: str | None,
) -> str | None:
    """Scores as metrics and the written files as artifacts, in the checkpoint's run or a new one."""
    tracker = MLflowTracker(
        experiment_name=request.experiment,
        run_name=f"evaluate-{name}",
        tracking_uri=request.tracking_uri,
        save_dir=str(out),
    )
    if run_id:
        tracker.continue_run(run_id)
    numeric = {f"eval/{name}/{key}": float(value) for key, value in scores.items() if isinstance(value, (int, float))}
    tracker.log_metrics(numeric, step=0)
    tracker.log_hyperparams(
        {
            f"eval/{name}/task": request.task,
            f"eval/{name}/data": request.data,
            f"eval/{name}/protocol": request.protocol,
            f"eval/{name}/scorer_options": json.dumps(options, sort_keys=True),
        }
    )
    for file in ("predictions.jsonl", "scores.json", "summary.csv", "summary.md", "submission.json"):
        if (out / file).is_file():
            tracker.experiment.log_artifact(tracker.run_id, str(out / file), artifact_path=f"eval/{name}")
    tracker.finalize("success")
    return tracker.run_id
