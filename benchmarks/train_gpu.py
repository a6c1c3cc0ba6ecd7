"""Training throughput of the paper's stages at their real shapes on one GPU: samples/s, real tokens/s,
MFU and peak memory, single-device (what each DDP rank runs) and FSDP2, with and without activation
checkpointing, and the largest micro-batch that fits 80 GB.

    python benchmarks/train_gpu.py                         # every stage, every mode, on the GPU
    python benchmarks/train_gpu.py --stages 0.8b/pretrain-2 2b/finetune --max-batch
    python benchmarks/train_gpu.py --tiny                  # the same code on CPU at the tiny shape (CI)

Each run is a real `Trainer.fit` of `H2OVLModule` (bf16-mixed, AdamW, clipping, the stage's freeze spec)
over one synthetic batch repeated: a sample is `--tiles` 448-px tiles (6 + thumbnail: 1,792 visual
tokens) and `--text` text tokens, the last `--answer` of them supervised. Weights are random (no hub
here): throughput does not depend on them. The tokenizer is a stand-in with Danube's 32,000 pieces
plus H2OVL's tokens. MFU uses the model-FLOP count of `h2ovl.training.flops` (attention backward 2x
forward, recomputation not counted) against the GPU's dense bf16 peak (`dense_peak_flops`).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from h2ovl.constants import ADDED_TOKENS, END, IMG_CONTEXT, IMG_END, IMG_START
from h2ovl.training.flops import dense_peak_flops
from h2ovl.training.module import H2OVLModule, Trainable
from h2ovl.training.strategies import H2OVLFSDPStrategy

STAGES: dict[str, tuple[str, Trainable]] = {
    "0.8b/pretrain-1": ("h2ovl-0.8b", Trainable(vision=False, projector=True, llm=False)),
    "0.8b/pretrain-2": ("h2ovl-0.8b", Trainable(vision=False, projector=True, llm=True)),
    "0.8b/finetune": ("h2ovl-0.8b", Trainable(vision=True, projector=True, llm=True)),
    "2b/pretrain": ("h2ovl-2b", Trainable(vision=True, projector=True, llm=False)),
    "2b/finetune": ("h2ovl-2b", Trainable(vision=True, projector=True, llm=True)),
}
#: samples/s per H100 implied by the paper's Table 2 (samples x epochs / (8 GPUs x hours))
PAPER_SAMPLES_PER_S = {
    "0.8b/pretrain-1": 15.4,
    "0.8b/pretrain-2": 36.1,
    "0.8b/finetune": 8.1,
    "2b/pretrain": 20.3,
    "2b/finetune": 7.9,
}


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


def synthetic_batch(
    tokenizer: Any, micro_batch: int, tiles: int, tile_size: int, tokens_per_tile: int, text: int, answer: int
) -> dict:
    """`micro_batch` identical-shape samples: prompt, one image of `tiles` tiles, text, a supervised answer."""
    ids = tokenizer.convert_tokens_to_ids
    image = [ids(IMG_START)] + [ids(IMG_CONTEXT)] * (tiles * tokens_per_tile) + [ids(IMG_END)]
    generator = torch.Generator().manual_seed(0)
    special = set(tokenizer.all_special_ids) | set(ids([IMG_START, IMG_END, IMG_CONTEXT, END]))
    plain = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    words = plain[torch.randint(0, len(plain), (text + 2,), generator=generator)].tolist()
    # one plain word stands for each text marker (<|prompt|>, <|answer|>), as in the released tokenizers
    prompt_marker, answer_marker, words = words[0], words[1], words[2:]
    row = (
        [prompt_marker]
        + image
        + words[: text - answer]
        + [ids(END), answer_marker]
        + words[text - answer :]
        + [ids(END)]
    )
    length = len(row)
    input_ids = torch.tensor([row] * micro_batch)
    labels = torch.full_like(input_ids, -100)
    labels[:, length - answer - 1 :] = input_ids[:, length - answer - 1 :]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": torch.arange(length).expand(micro_batch, length).clone(),
        "attention_mask": torch.ones_like(input_ids),
        "sample_index": torch.arange(micro_batch).unsqueeze(1).expand(micro_batch, length).clone(),
        "pixel_values": torch.randint(
            0, 256, (micro_batch * tiles, 3, tile_size, tile_size), dtype=torch.uint8, generator=generator
        ),
        "tiles_per_sample": torch.full((micro_batch,), tiles),
        "packed": False,
        "ids": [str(i) for i in range(micro_batch)],
    }


class Repeat(IterableDataset):
    def __init__(self, batch: dict, times: int) -> None:
        self.batch, self.times = batch, times

    def __iter__(self):
        return (self.batch for _ in range(self.times))


class StepTimer(L.Callback):
    """Seconds and FLOPs of the steps after `warmup`, and the peak memory they reached."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.seconds, self.flops, self.steps, self.peak_bytes, self.peak_reserved = warmup, 0.0, 0, 0, 0, 0

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._sync(module)
        if batch_idx == self.warmup and module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._sync(module)
        if batch_idx >= self.warmup:
            self.seconds += time.perf_counter() - self._start
            self.flops += module.flops_per_batch
            self.steps += 1
        if module.device.type == "cuda":
            # reserved is what the allocator holds (what runs out first); allocated is what tensors use
            self.peak_bytes, self.peak_reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()


def run(
    stage: str, mode: str, checkpointing: bool, micro_batch: int, args: argparse.Namespace, tokenizer_dir: str
) -> dict:
    preset, trainable = STAGES[stage]
    if args.tiny:
        preset = "tiny-mistral" if preset == "h2ovl-2b" else "tiny"
    module = H2OVLModule(
        preset=preset, tokenizer=tokenizer_dir, trainable=trainable, gradient_checkpointing=checkpointing
    )
    model = module.model
    batch = synthetic_batch(
        module.tokenizer, micro_batch, args.tiles, model.vision.tile_size, model.tokens_per_tile, args.text, args.answer
    )
    timer = StepTimer(args.warmup)
    gpu = torch.cuda.is_available() and not args.tiny
    strategy = H2OVLFSDPStrategy(param_dtype="bfloat16" if gpu else None) if mode == "fsdp" else "auto"
    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        strategy=strategy,
        precision="bf16-mixed" if gpu else "32-true",
        max_steps=args.warmup + args.steps,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, DataLoader(Repeat(batch, args.warmup + args.steps), batch_size=None))
    device = trainer.strategy.root_device
    peak = dense_peak_flops(device, torch.bfloat16) if device.type == "cuda" else None
    seconds = max(timer.seconds, 1e-9)
    tokens = int(batch["attention_mask"].sum()) * timer.steps
    return {
        "stage": stage,
        "mode": mode,
        "checkpointing": checkpointing,
        "micro_batch": micro_batch,
        "samples_per_s": micro_batch * timer.steps / seconds,
        "tokens_per_s": tokens / seconds,
        "tflops_per_s": timer.flops / seconds / 1e12,
        "mfu": timer.flops / seconds / peak if peak else None,
        "peak_gib": timer.peak_bytes / 2**30,
        "peak_reserved_gib": timer.peak_reserved / 2**30,
        "paper_samples_per_s": PAPER_SAMPLES_PER_S[stage],
        "error": None,
    }


def largest_micro_batch(stage: str, args: argparse.Namespace, tokenizer_dir: str, limit_gib: float = 80.0) -> int:
    """Doubling search for the largest micro-batch that trains within `limit_gib` (single device,
    activation checkpointing on): the memory the process may use is capped at that size."""
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, limit_gib * 2**30 / total))
    fits, size = 0, 1
    while size <= 256:
        try:
            run(
                stage,
                "single",
                True,
                size,
                argparse.Namespace(**{**vars(args), "steps": 1, "warmup": 1}),
                tokenizer_dir,
            )
            fits, size = size, size * 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            gc.collect()
            torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1.0)
    return fits


def table(rows: list[dict]) -> str:
    lines = [
        "| stage | mode | act. ckpt | micro-batch | samples/s | paper samples/s | tokens/s | TFLOP/s | MFU | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("error"):
            lines.append(
                f"| {r['stage']} | {r['mode']} | {'on' if r['checkpointing'] else 'off'} | {r['micro_batch']} | "
                f"failed: {r['error']} | {r['paper_samples_per_s']} | | | | |"
            )
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(
            f"| {r['stage']} | {r['mode']} | {'on' if r['checkpointing'] else 'off'} | {r['micro_batch']} | "
            f"{r['samples_per_s']:.2f} | {r['paper_samples_per_s']} | {r['tokens_per_s']:,.0f} | {r['tflops_per_s']:.1f} | {mfu} | {r['peak_gib']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--modes", nargs="+", default=["single", "fsdp"], choices=["single", "fsdp"])
    parser.add_argument("--checkpointing", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--tiles", type=int, default=7)
    parser.add_argument("--text", type=int, default=256)
    parser.add_argument("--answer", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-batch", action="store_true", help="also search the largest micro-batch within 80 GB")
    parser.add_argument("--tiny", action="store_true", help="the tiny presets on CPU (a smoke run of this script)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.tiles, args.text, args.answer = min(args.tiles, 2), min(args.text, 32), min(args.answer, 8)
    elif not torch.cuda.is_available():
        parser.error("no GPU: run with --tiny for the CPU smoke run")
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = None if args.tiny else stand_in_tokenizer(Path(scratch) / "tokenizer")
        for stage in args.stages:
            for mode in args.modes:
                for checkpointing in args.checkpointing:
                    # Each row stands alone: an exception (out of memory or any other) is that row's result,
                    # and the rows so far are written after every row, so a later crash loses nothing.
                    try:
                        row = run(stage, mode, checkpointing == "on", args.micro_batch, args, tokenizer_dir)
                    except Exception as error:  # noqa: BLE001 - recorded in the row, the next row still runs
                        kind = (
                            "out of memory" if isinstance(error, torch.cuda.OutOfMemoryError) else type(error).__name__
                        )
                        row = {
                            "stage": stage,
                            "mode": mode,
                            "checkpointing": checkpointing == "on",
                            "micro_batch": args.micro_batch,
                            "paper_samples_per_s": PAPER_SAMPLES_PER_S[stage],
                            "error": f"{kind}: {str(error).splitlines()[0][:200]}",
                        }
                    rows.append(row)
                    gc.collect()
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    if row["error"]:
                        print(f"{stage} {mode} checkpointing {checkpointing}: {row['error']}", flush=True)
                    else:
                        print(
                            f"{stage} {mode} checkpointing {checkpointing}: {row['samples_per_s']:.2f} samples/s, "
                            f"MFU {row['mfu'] if row['mfu'] is None else format(row['mfu'], '.1%')}, {row['peak_gib']:.1f} GiB "
                            f"allocated, {row['peak_reserved_gib']:.1f} GiB reserved",
                            flush=True,
                        )
                    if args.out:
                        args.out.write_text(json.dumps(rows, indent=2))
            if args.max_batch and not args.tiny:
                print(
                    f"{stage}: largest micro-batch within 80 GB (single device, activation checkpointing): "
                    f"{largest_micro_batch(stage, args, tokenizer_dir)}",
                    flush=True,
                )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
