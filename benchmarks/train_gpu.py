"""Training throughput and memory of the paper's stages at their real shapes on one GPU: samples/s, real
tokens/s, MFU and peak reserved memory, padded and packed, single-device (what each DDP rank runs) and
FSDP2, with and without activation checkpointing; and the largest micro-batch under named memory caps.

    python benchmarks/train_gpu.py                         # every stage, mode and layout, on the GPU
    python benchmarks/train_gpu.py --stages 0.8b/finetune 2b/finetune --max-batch
    python benchmarks/train_gpu.py --tiny                  # the same code on CPU at the tiny shapes (CI)

The workload is the recipe's, not a convenient one:
- Images: `PAGE_MIX`, a stated mix of page sizes (document pages, 4:3 photos, 16:9 screenshots, wide
  strips, word crops), tiled by the stage's own preprocessor (0.8B: dynamic resolution, 2B: MSAC, with
  thumbnail), so a 2B portrait page costs its 13 tiles. Each sample is one image and `--text` text tokens,
  the last `--answer` supervised.
- Batches: the recipe's micro-batch (`RECIPE_MICRO_BATCH`) and, per optimizer step, the accumulation the
  paper's 8 GPUs need for its global batch (`RECIPE_GLOBAL_BATCH`), so the optimizer and clipping run as
  often as in training. Padded rows take the samples in order; packed rows fill `--pack-tokens` from the
  same stream (the data module's first-fit rule).
- Every row is a real `Trainer.fit` of `H2OVLModule` (bf16-mixed, AdamW, clipping, the stage's freeze
  spec); weights are random (no hub here; throughput does not depend on them) and the tokenizer a stand-in
  with Danube's 32,000 pieces plus H2OVL's tokens.
- MFU counts the model FLOPs of each sample alone (`h2ovl.training.flops`: padding, cross-sample attention
  in a packed row and recomputation are not useful work) against the GPU's dense bf16 peak; `mfu_rows`
  counts the whole rows as the training log does.
- A row that raises (out of memory or anything else) is that row's result; the JSON is rewritten after
  every row.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from h2ovl.constants import ADDED_TOKENS, END, IMG_CONTEXT, IMG_END, IMG_START
from h2ovl.data.packing import best_fit_row, collate_rows
from h2ovl.data.samples import Sample
from h2ovl.model.config import preset as preset_config
from h2ovl.model.h2ovl import Attention
from h2ovl.preprocessing import instantiate_preprocessor
from h2ovl.training.flops import dense_peak_flops, training_flops
from h2ovl.training.module import H2OVLModule
from h2ovl.training.settings import Initialization, Trainable
from h2ovl.training.strategies import H2OVLFSDPStrategy

STAGES: dict[str, tuple[str, Trainable]] = {
    "0.8b/pretrain-1": ("h2ovl-0.8b", Trainable(vision=False, projector=True, llm=False)),
    "0.8b/pretrain-2": ("h2ovl-0.8b", Trainable(vision=False, projector=True, llm=True)),
    "0.8b/finetune": ("h2ovl-0.8b", Trainable(vision=True, projector=True, llm=True)),
    "2b/pretrain": ("h2ovl-2b", Trainable(vision=True, projector=True, llm=False)),
    "2b/finetune": ("h2ovl-2b", Trainable(vision=True, projector=True, llm=True)),
}
#: The tiny presets with the same preprocessors, for the CPU form.
TINY_PRESETS = {"h2ovl-0.8b": "tiny", "h2ovl-2b": "tiny-mistral"}
#: samples/s per H100 implied by the paper's Table 2 (samples x epochs / (8 GPUs x hours))
PAPER_SAMPLES_PER_S = {
    "0.8b/pretrain-1": 15.4,
    "0.8b/pretrain-2": 36.1,
    "0.8b/finetune": 8.1,
    "2b/pretrain": 20.3,
    "2b/finetune": 7.9,
}
#: The recipes' batch (experiments/paper/base.yaml; a test keeps these equal) and the paper's GPU count.
RECIPE_MICRO_BATCH = 4
RECIPE_GLOBAL_BATCH = 256
PAPER_GPUS = 8
RECIPE_ACCUMULATION = RECIPE_GLOBAL_BATCH // (RECIPE_MICRO_BATCH * PAPER_GPUS)


@dataclass(frozen=True)
class PageKind:
    name: str
    width: int
    height: int
    share: float


#: The page-size mix of the benchmark's samples (shares sum to 1): OCR and document data is mostly
#: pages, then photos of scenes and charts, screenshots, text lines and word crops.
PAGE_MIX = (
    PageKind("document page, A4 portrait at 200 dpi", 1654, 2339, 0.30),
    PageKind("document page, US Letter portrait at 150 dpi", 1275, 1650, 0.10),
    PageKind("photo, 4:3 landscape", 1024, 768, 0.25),
    PageKind("screenshot, 16:9", 1920, 1080, 0.10),
    PageKind("wide strip, 4:1 (a text line, a table row)", 1600, 400, 0.15),
    PageKind("word crop, 4:1", 256, 64, 0.10),
)
#: Caps for the largest micro-batch: an H100 80 GB (80e9 bytes, below its usable memory) and the device.
H100_CAP = ("H100 80 GB", 80e9)


def page_sequence(n: int, seed: int = 0) -> list[PageKind]:
    """`n` pages in the mix's exact proportions (rounded), in a seeded random order."""
    pages = [kind for kind in PAGE_MIX for _ in range(round(kind.share * n))]
    pages = (pages + [PAGE_MIX[0]] * n)[:n]
    random.Random(seed).shuffle(pages)
    return pages


def stage_tiles(preset: str, pages: list[PageKind]) -> list[int]:
    """Tiles of each page under the preset's own preprocessor (its plan; no pixel is touched)."""
    preprocessor = instantiate_preprocessor(preset_config(preset).preprocessor)
    return [preprocessor.plan(page.width, page.height).n_tiles for page in pages]


def stand_in_tokenizer(folder: Path, pieces: int = 32000, with_h2ovl_tokens: bool = True) -> str:
    """A tokenizer directory with `pieces` word-level pieces (Danube's vocabulary size) and, unless told
    otherwise, H2OVL's tokens (without them it is a base tokenizer, as Danube's own)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    vocab = {token: i for i, token in enumerate(specials + [f"w{i}" for i in range(pieces - len(specials))])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    if with_h2ovl_tokens:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": list(ADDED_TOKENS)}
        )  # the markers stay text, as released
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def synthetic_sample(
    tokenizer: Any, sample_id: str, tiles: int, tile_size: int, tokens_per_tile: int, text: int, answer: int
) -> Sample:
    """Prompt, one image of `tiles` tiles, text, then a supervised answer of `answer` tokens."""
    ids = tokenizer.convert_tokens_to_ids
    image = [ids(IMG_START)] + [ids(IMG_CONTEXT)] * (tiles * tokens_per_tile) + [ids(IMG_END)]
    generator = torch.Generator().manual_seed(len(sample_id) + tiles)
    special = set(tokenizer.all_special_ids) | set(ids([IMG_START, IMG_END, IMG_CONTEXT, END]))
    plain = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    words = plain[torch.randint(0, len(plain), (text + 2,), generator=generator)].tolist()
    # one plain word stands for each text marker (<|prompt|>, <|answer|>), as in the released tokenizers
    prompt_marker, answer_marker, words = words[0], words[1], words[2:]
    row = [prompt_marker, *image, *words[: text - answer], ids(END), answer_marker, *words[text - answer :], ids(END)]
    input_ids = torch.tensor(row)
    labels = torch.full_like(input_ids, -100)
    labels[len(row) - answer - 1 :] = input_ids[len(row) - answer - 1 :]
    # One random tile repeated (a view, no memory): pixel values do not change the cost.
    tile = torch.randint(0, 256, (1, 3, tile_size, tile_size), dtype=torch.uint8, generator=generator)
    return Sample(
        input_ids=input_ids, labels=labels, tiles=tile.expand(tiles, -1, -1, -1), dataset="bench", id=sample_id
    )


def synthetic_batch(
    tokenizer: Any, micro_batch: int, tiles: int, tile_size: int, tokens_per_tile: int, text: int, answer: int
) -> dict:
    """`micro_batch` samples of one shape, padded into a batch."""
    samples = [
        synthetic_sample(tokenizer, str(i), tiles, tile_size, tokens_per_tile, text, answer) for i in range(micro_batch)
    ]
    return collate_rows([[s] for s in samples], tokenizer.pad_token_id or 0, packed=False)


def padded_batches(samples: list[Sample], micro_batch: int, pad_id: int) -> list[dict]:
    """Micro-batches of `micro_batch` samples in stream order, each padded to its longest."""
    return [
        collate_rows([[s] for s in samples[i : i + micro_batch]], pad_id, packed=False)
        for i in range(0, len(samples) - micro_batch + 1, micro_batch)
    ]


def packed_batches(
    samples: list[Sample], rows: int, pack_tokens: int, pack_tiles: int, pad_id: int, buffer: int = 16
) -> list[dict]:
    """Micro-batches of `rows` packed rows, each filled first-fit from a buffer of the stream's next samples
    (the data module's rule, `best_fit_row`)."""
    pending, batches, current = list(samples), [], []
    while pending:
        window = pending[:buffer]
        chosen = best_fit_row([s.length for s in window], [s.n_tiles for s in window], pack_tokens, pack_tiles)
        current.append([window[i] for i in chosen])
        pending = [s for i, s in enumerate(window) if i not in chosen] + pending[buffer:]
        if len(current) == rows:
            batches.append(collate_rows(current, pad_id, packed=True))
            current = []
    return batches


class Cycle(IterableDataset):
    """The batches, in order, over and over, `total` of them."""

    def __init__(self, batches: list[dict], total: int) -> None:
        self.batches, self.total = batches, total

    def __iter__(self) -> Iterator[dict]:
        return (self.batches[i % len(self.batches)] for i in range(self.total))


class StepTimer(L.Callback):
    """Seconds, samples, tokens and FLOPs of the micro-batches after the first `warmup` optimizer steps,
    and the peak memory they reached."""

    def __init__(self, warmup: int, useful_flops: Callable[[dict], int]) -> None:
        self.warmup, self.useful_flops = warmup, useful_flops
        self.seconds, self.samples, self.tokens, self.flops, self.row_flops, self.micro_batches = 0.0, 0, 0, 0, 0, 0
        self.peak_allocated = self.peak_reserved = 0
        self._measuring = False

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._sync(module)
        # `global_step` counts the optimizer steps done: this micro-batch belongs to the next one.
        self._measuring = trainer.global_step >= self.warmup
        if self._measuring and self.micro_batches == 0 and module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._sync(module)
        if not self._measuring:
            return
        self.seconds += time.perf_counter() - self._start
        self.samples += len(batch["ids"])
        self.tokens += int(batch["attention_mask"].sum())
        self.flops += self.useful_flops(batch)
        self.row_flops += module.flops_per_batch
        self.micro_batches += 1
        if module.device.type == "cuda":
            # reserved is what the allocator holds (what runs out first); allocated is what tensors use
            self.peak_allocated = torch.cuda.max_memory_allocated()
            self.peak_reserved = torch.cuda.max_memory_reserved()


@dataclass
class Workload:
    """One stage's samples and what they cost, from its own preprocessor over `PAGE_MIX`."""

    stage: str
    preset: str
    tiles: list[int]
    samples: list[Sample]

    def summary(self, tokens_per_tile: int) -> dict[str, Any]:
        lengths = [s.length for s in self.samples]
        return {
            "tiles_per_sample": sum(self.tiles) / len(self.tiles),
            "max_tiles": max(self.tiles),
            "visual_tokens_per_sample": tokens_per_tile * sum(self.tiles) / len(self.tiles),
            "tokens_per_sample": sum(lengths) / len(lengths),
            "max_tokens": max(lengths),
        }


def build_module(stage: str, args: argparse.Namespace, tokenizer_dir: str | None, checkpointing: bool) -> H2OVLModule:
    preset, trainable = STAGES[stage]
    return H2OVLModule(
        preset=TINY_PRESETS[preset] if args.tiny else preset,
        init=Initialization(tokenizer=tokenizer_dir),
        trainable=trainable,
        gradient_checkpointing=checkpointing,
        attention=args.attention,
    )


def workload(stage: str, module: H2OVLModule, args: argparse.Namespace) -> Workload:
    preset = module.hparams.preset
    tiles = stage_tiles(preset, page_sequence(args.samples))
    model = module.model
    samples = [
        synthetic_sample(
            module.tokenizer, str(i), n, model.vision.tile_size, model.tokens_per_tile, args.text, args.answer
        )
        for i, n in enumerate(tiles)
    ]
    return Workload(stage, preset, tiles, samples)


def batches(work: Workload, layout: str, micro_batch: int, args: argparse.Namespace, pad_id: int) -> list[dict]:
    if layout == "padded":
        return padded_batches(work.samples, micro_batch, pad_id)
    return packed_batches(work.samples, args.pack_rows, args.pack_tokens, args.pack_tiles, pad_id)


def sample_flops(model: torch.nn.Module, batch: dict) -> int:
    """Model FLOPs of the batch's samples, each alone at its own length (no padding, no neighbours)."""
    lengths = torch.bincount(batch["sample_index"][batch["sample_index"] >= 0].flatten()).tolist()
    return sum(
        training_flops(model, int(tiles), 1, length)
        for tiles, length in zip(batch["tiles_per_sample"].tolist(), lengths, strict=True)
    )


def fit(module: H2OVLModule, mode: str, data: list[dict], args: argparse.Namespace, timer: StepTimer) -> L.Trainer:
    gpu = torch.cuda.is_available() and not args.tiny
    strategy = H2OVLFSDPStrategy(param_dtype="bfloat16" if gpu else None) if mode == "fsdp" else "auto"
    steps = args.warmup + args.steps
    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        strategy=strategy,
        precision="bf16-mixed" if gpu else "32-true",
        max_steps=steps,
        accumulate_grad_batches=args.accumulate,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, DataLoader(Cycle(data, steps * args.accumulate), batch_size=None))
    return trainer


def run(
    stage: str, mode: str, checkpointing: bool, layout: str, args: argparse.Namespace, tokenizer_dir: str | None
) -> dict:
    """One row: the stage trained in `mode` on `layout` rows for `args.warmup + args.steps` optimizer steps."""
    module = build_module(stage, args, tokenizer_dir, checkpointing)
    work = workload(stage, module, args)
    data = batches(work, layout, args.micro_batch, args, module.tokenizer.pad_token_id or 0)
    timer = StepTimer(args.warmup, lambda batch: sample_flops(module.model, batch))
    trainer = fit(module, mode, data, args, timer)
    device = trainer.strategy.root_device
    peak = dense_peak_flops(device, torch.bfloat16) if device.type == "cuda" else None
    seconds = max(timer.seconds, 1e-9)
    return {
        **row_key(stage, mode, checkpointing, layout, args),
        **work.summary(module.model.tokens_per_tile),
        "samples_per_s": timer.samples / seconds,
        "tokens_per_s": timer.tokens / seconds,
        "real_token_fraction": sum(int(b["attention_mask"].sum()) for b in data)
        / sum(b["attention_mask"].numel() for b in data),
        "tflops_per_s": timer.flops / seconds / 1e12,
        "mfu": timer.flops / seconds / peak if peak else None,
        "mfu_rows": timer.row_flops / seconds / peak if peak else None,
        "peak_allocated_gib": timer.peak_allocated / 2**30,
        "peak_reserved_gib": timer.peak_reserved / 2**30,
        "error": None,
    }


def row_key(stage: str, mode: str, checkpointing: bool, layout: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "stage": stage,
        "mode": mode,
        "checkpointing": checkpointing,
        "layout": layout,
        "micro_batch": args.micro_batch if layout == "padded" else f"{args.pack_rows}x{args.pack_tokens} tokens",
        "accumulation": args.accumulate,
        "attention": args.attention,
        "paper_samples_per_s": PAPER_SAMPLES_PER_S[stage],
    }


def largest_passing(passes: Callable[[int], bool], limit: int) -> int:
    """The largest n in [1, limit] with passes(n), assuming passing is monotone (0 if 1 fails): doubling
    to the first failure, then bisection between the last pass and it."""
    good, size = 0, 1
    while size <= limit and passes(size):
        good, size = size, size * 2
    bad = min(size, limit + 1)
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if passes(middle) else (good, middle)
    return good


def reserved_peak(module: H2OVLModule, batch: dict, cap: float, args: argparse.Namespace) -> float | None:
    """GiB the allocator reserved at most over one optimizer step on `batch` (single device), with the
    process held under `cap` bytes; None if the step ran out of memory."""
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / torch.cuda.get_device_properties(0).total_memory))
    timer = StepTimer(0, lambda batch: 0)
    probe = argparse.Namespace(**{**vars(args), "warmup": 0, "steps": 1, "accumulate": 1})
    try:
        fit(module, "single", [batch], probe, timer)
        return timer.peak_reserved / 2**30
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        module.zero_grad(set_to_none=True)
        module.trainer = None  # drops the optimizer's state with the trainer
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0)


def largest_micro_batch(
    stage: str, args: argparse.Namespace, tokenizer_dir: str | None, caps: list[tuple[str, float]]
) -> list[dict]:
    """Per cap: the largest padded micro-batch of the mix's longest sample that trains a step (single
    device, activation checkpointing on) with the allocator's reserved memory held under the cap, and the
    reserved peak it reached. One model serves every probe."""
    module = build_module(stage, args, tokenizer_dir, checkpointing=True)
    longest = max(workload(stage, module, args).samples, key=lambda s: s.length)
    pad_id = module.tokenizer.pad_token_id or 0
    results = []
    for name, cap in caps:
        peaks: dict[int, float | None] = {}

        def passes(size: int, cap: float = cap, peaks: dict = peaks) -> bool:
            peaks[size] = reserved_peak(module, collate_rows([[longest]] * size, pad_id, packed=False), cap, args)
            return peaks[size] is not None

        best = largest_passing(passes, args.max_batch_limit)
        results.append(
            {
                "stage": stage,
                "cap": name,
                "cap_gib": cap / 2**30,
                "largest_micro_batch": best,
                "sample_tokens": longest.length,
                "sample_tiles": longest.n_tiles,
                "peak_reserved_gib": peaks.get(best),
                "probes": {str(size): peak for size, peak in sorted(peaks.items())},
            }
        )
    return results


def failed_row(key: dict[str, Any], error: BaseException) -> dict[str, Any]:
    kind = "out of memory" if isinstance(error, torch.cuda.OutOfMemoryError) else type(error).__name__
    return {**key, "error": f"{kind}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}"}


def describe(row: dict[str, Any]) -> str:
    label = f"{row['stage']} {row['mode']} {row['layout']} checkpointing {'on' if row['checkpointing'] else 'off'}"
    if row["error"]:
        return f"{label}: {row['error']}"
    mfu = "n/a" if row["mfu"] is None else format(row["mfu"], ".1%")
    return (
        f"{label}: {row['samples_per_s']:.2f} samples/s, MFU {mfu}, {row['peak_reserved_gib']:.1f} GiB reserved "
        f"({row['tiles_per_sample']:.1f} tiles, {row['tokens_per_sample']:.0f} tokens per sample)"
    )


def table(rows: list[dict]) -> str:
    lines = [
        "| stage | mode | layout | act. ckpt | micro-batch | samples/s | paper samples/s | real tokens | MFU | peak reserved GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r['stage']} | {r['mode']} | {r['layout']} | {'on' if r['checkpointing'] else 'off'} | {r['micro_batch']} |"
        if r.get("error"):
            lines.append(f"{head} failed: {r['error']} | {r['paper_samples_per_s']} | | | |")
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(
            f"{head} {r['samples_per_s']:.2f} | {r['paper_samples_per_s']} | {r['real_token_fraction']:.0%} | {mfu} | "
            f"{r['peak_reserved_gib']:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument(
        "--modes", nargs="*", default=["single", "fsdp"], choices=["single", "fsdp"], help="none: no rows"
    )
    parser.add_argument("--checkpointing", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--layouts", nargs="+", default=["padded", "packed"], choices=["padded", "packed"])
    parser.add_argument("--micro-batch", type=int, default=RECIPE_MICRO_BATCH, help="padded samples per micro-batch")
    parser.add_argument("--accumulate", type=int, default=RECIPE_ACCUMULATION, help="micro-batches per optimizer step")
    parser.add_argument("--pack-tokens", type=int, default=8192, help="tokens per packed row")
    parser.add_argument("--pack-tiles", type=int, default=64, help="tiles per packed row")
    parser.add_argument("--pack-rows", type=int, default=1, help="packed rows per micro-batch")
    parser.add_argument("--attention", default="sdpa", choices=get_args(Attention), help="the LLM's kernel")
    parser.add_argument("--samples", type=int, default=64, help="samples drawn from the page mix, cycled")
    parser.add_argument("--text", type=int, default=256, help="text tokens per sample")
    parser.add_argument("--answer", type=int, default=128, help="of which supervised")
    parser.add_argument("--warmup", type=int, default=1, help="optimizer steps not timed")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps timed")
    parser.add_argument("--max-batch", action="store_true", help="also find the largest micro-batch under each cap")
    parser.add_argument("--max-batch-limit", type=int, default=64)
    parser.add_argument("--tiny", action="store_true", help="the tiny presets on CPU (a smoke run of this script)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here, after every row")
    args = parser.parse_args(argv)
    if args.tiny:
        args.text, args.answer = min(args.text, 32), min(args.answer, 8)
        args.pack_tokens = min(args.pack_tokens, 1024)
    elif not torch.cuda.is_available():
        parser.error("no GPU: run with --tiny for the CPU smoke run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    report: dict[str, Any] = {
        "page_mix": [asdict(kind) for kind in PAGE_MIX],
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": [],
        "largest_micro_batch": [],
    }

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = None if args.tiny else stand_in_tokenizer(Path(scratch) / "tokenizer")
        for stage in args.stages:
            for mode in args.modes:
                for checkpointing in args.checkpointing:
                    for layout in args.layouts:
                        # Each row stands alone: an exception (out of memory or any other) is that row's
                        # result, and the rows so far are written after every row.
                        try:
                            row = run(stage, mode, checkpointing == "on", layout, args, tokenizer_dir)
                        except Exception as error:  # noqa: BLE001 - recorded in the row, the next row still runs
                            row = failed_row(row_key(stage, mode, checkpointing == "on", layout, args), error)
                        report["rows"].append(row)
                        gc.collect()
                        if torch.cuda.is_available():
                            torch.cuda.empty_cache()
                        print(describe(row), flush=True)
                        save()
            if args.max_batch and torch.cuda.is_available() and not args.tiny:
                device_cap = (torch.cuda.get_device_name(0), float(torch.cuda.get_device_properties(0).total_memory))
                try:
                    found = largest_micro_batch(stage, args, tokenizer_dir, [H100_CAP, device_cap])
                except Exception as error:  # noqa: BLE001 - reported, the next stage still runs
                    found = [{"stage": stage, "error": failed_row({}, error)["error"]}]
                for result in found:
                    print(f"largest micro-batch: {json.dumps(result)}", flush=True)
                report["largest_micro_batch"] += found
                save()
    print(table(report["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
