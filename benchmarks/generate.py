"""Generation: batched, left-padded, KV-cached greedy decoding against one sample at a time, in one run.

Same prompts both ways (the synthetic test tasks: transcription, KIE, document VQA, multi-image,
text-only, tiled by dynamic resolution), tiny preset, CPU. Every sample generates exactly
`--new-tokens` tokens both ways (the end token is suppressed until then), so samples/s compares equal work.
Also reported: how many samples' greedy answers are identical both ways (padding should not change them).
Goal: batched >= 5x the samples/s of one at a time. Last line: one JSON object with the figures.

    python benchmarks/generate.py [--samples 48] [--batch 16] [--new-tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from h2ovl.data.batching import Batching
from h2ovl.data.datamodule import H2OVLDataModule, SyntheticData
from h2ovl.data.processor import Processor
from h2ovl.model.h2ovl import H2OVL
from h2ovl.training.generation import prompt_batch


def generate_all(model: H2OVL, batches: list[dict], pad: int, new_tokens: int) -> tuple[list[list[int]], float]:
    """Every sample's generated ids, and samples/s."""
    outputs: list[list[int]] = []
    start = time.perf_counter()
    for batch in batches:
        prompts = prompt_batch(batch, model, pad)
        generated = model.generate(**prompts, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        outputs += generated.tolist()
    return outputs, len(outputs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model, tokenizer = H2OVL.from_preset("tiny")
    model.eval()
    pad = tokenizer.pad_token_id
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        metas = SyntheticData(out=folder, n=args.samples * 2, seed=0, test_fraction=0.5, max_side=512).ensure()
        data = H2OVLDataModule(batching=Batching(val_batch_size=1)).bind(
            Processor(tokenizer, model.build_preprocessor(), model.tokens_per_tile)
        )
        singles = list(data.eval_dataloader(str(metas["test"]), limit=args.samples))
        data.batching = Batching(val_batch_size=args.batch)
        batched = list(data.eval_dataloader(str(metas["test"]), limit=args.samples))
        generate_all(model, batched[:1], pad, 2)  # warm-up
        one_by_one, single_rate = generate_all(model, singles, pad, args.new_tokens)
        together, batched_rate = generate_all(model, batched, pad, args.new_tokens)
    prompt_lengths = [int(b["attention_mask"].sum()) for b in singles]
    result = {
        "samples": len(one_by_one),
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "prompt_tokens": {
            "min": min(prompt_lengths),
            "mean": round(sum(prompt_lengths) / len(prompt_lengths), 1),
            "max": max(prompt_lengths),
        },
        "samples_per_s_one_at_a_time": round(single_rate, 2),
        "samples_per_s_batched": round(batched_rate, 2),
        "speedup": round(batched_rate / single_rate, 2),
        "identical_answers": sum(a == b for a, b in zip(one_by_one, together)),
        "goal_speedup": 5.0,
    }
    result["goal_met"] = result["speedup"] >= 5.0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
