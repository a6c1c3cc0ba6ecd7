"""Training-step speed and memory: our H2OVL against transformers' InternVL, same weights, same inputs.

Both models are built from one small random InternVL configuration (ours loads transformers' weights
through the released layout, as the parity test does), and each runs forward + backward on the same
batch in its own subprocess, so that peak resident memory is measured per model. Runs alternate
(ours, theirs, ours, theirs, ...) within this one run; the best samples/s of each is kept, and
peak memory is the resident-set peak during the training steps (Linux VmHWM, reset after warm-up).
Last line: one JSON object with both figures and the ratios.

    python benchmarks/model.py [--steps 10] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

IMAGE_TOKEN_ID, VOCAB = 1000, 1024
BATCH, TILES_PER_SAMPLE, TEXT_TOKENS, TILE = 4, 3, 96, 64


def build_hf():
    from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig, LlamaConfig

    torch.manual_seed(0)
    vision = InternVLVisionConfig(
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=768,
        image_size=[TILE, TILE],
        patch_size=[8, 8],
        attention_bias=True,
    )
    text = LlamaConfig(
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        vocab_size=VOCAB,
        tie_word_embeddings=False,
    )
    config = InternVLConfig(vision_config=vision, text_config=text, image_token_id=IMAGE_TOKEN_ID, downsample_ratio=0.5)
    config._attn_implementation = "sdpa"
    return InternVLForConditionalGeneration(config)


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tokens = TILES_PER_SAMPLE * (TILE // 8 // 2) ** 2
    ids = torch.randint(0, IMAGE_TOKEN_ID, (BATCH, TEXT_TOKENS + tokens), generator=generator)
    ids[:, 4 : 4 + tokens] = IMAGE_TOKEN_ID
    labels = ids.clone()
    labels[:, : 4 + tokens] = -100
    tiles = torch.randint(0, 256, (BATCH * TILES_PER_SAMPLE, 3, TILE, TILE), dtype=torch.uint8, generator=generator)
    return {"input_ids": ids, "labels": labels, "tiles": tiles}


def worker(which: str, checkpoint: Path, steps: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    inputs = batch()
    if which == "ours":
        from h2ovl.model import H2OVL

        model = H2OVL.from_released(checkpoint, image_token_id=IMAGE_TOKEN_ID)
        step = lambda: model(inputs["input_ids"], pixel_values=inputs["tiles"], labels=inputs["labels"]).loss  # noqa: E731
    else:
        from h2ovl.preprocessing import TileNormalizer

        model = build_hf()
        normalise = TileNormalizer()

        # transformers takes normalised floats; normalising inside the step keeps the work equal.
        def step() -> torch.Tensor:
            pixels = normalise(inputs["tiles"])
            return model(input_ids=inputs["input_ids"], pixel_values=pixels, labels=inputs["labels"]).loss

    model.train()
    step().backward()  # warm-up (allocations, kernel selection)
    model.zero_grad(set_to_none=True)
    gc.collect()
    reset_peak_rss()  # so loading (ours reads a checkpoint, theirs does not) is not counted
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
        loss.backward()
        model.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return {"samples_per_s": BATCH * steps / seconds, "peak_rss_mib": peak_rss_mib(), "loss": loss.item()}


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the process's peak resident set size (VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=("ours", "hf"), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.checkpoint, args.steps, args.threads)))
        return

    from h2ovl.model.hf_internvl import save_hf_internvl_as_released

    results: dict[str, list[dict]] = {"ours": [], "hf": []}
    with tempfile.TemporaryDirectory() as tmp:
        save_hf_internvl_as_released(build_hf(), Path(tmp))
        for _ in range(args.rounds):
            for which in ("ours", "hf"):
                command = [
                    sys.executable,
                    __file__,
                    "--worker",
                    which,
                    "--checkpoint",
                    tmp,
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                ]
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                results[which].append(json.loads(output.strip().splitlines()[-1]))
    best = {which: max(runs, key=lambda r: r["samples_per_s"]) for which, runs in results.items()}
    peak = {which: min(r["peak_rss_mib"] for r in runs) for which, runs in results.items()}
    same_loss = abs(best["ours"]["loss"] - best["hf"]["loss"]) < 1e-3
    print(
        f"batch {BATCH} x ({TILES_PER_SAMPLE} tiles of {TILE}px + {TEXT_TOKENS} text tokens), {args.threads} threads, "
        f"{args.steps} steps x {args.rounds} rounds; same loss: {same_loss}"
    )
    for which, label in (("ours", "h2ovl"), ("hf", "transformers InternVL")):
        print(
            f"  {label:<22} {best[which]['samples_per_s']:7.2f} samples/s   peak RSS during steps {peak[which]:7.1f} MiB"
        )
    print(
        json.dumps(
            {
                "ours_samples_per_s": round(best["ours"]["samples_per_s"], 3),
                "hf_samples_per_s": round(best["hf"]["samples_per_s"], 3),
                "speed_ratio": round(best["ours"]["samples_per_s"] / best["hf"]["samples_per_s"], 3),
                "ours_peak_rss_mib": round(peak["ours"], 1),
                "hf_peak_rss_mib": round(peak["hf"], 1),
                "memory_ratio": round(peak["ours"] / peak["hf"], 3),
                "same_loss": same_loss,
            }
        )
    )


if __name__ == "__main__":
    main()
