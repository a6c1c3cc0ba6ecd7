"""A paper recipe through the real CLI at reduced data: `h2ovl fit` of the 0.8B fine-tune stage for 20
steps in bf16 under FSDP2, tracked in an MLflow file store, from random weights and the benchmark's
stand-in tokenizer (the GPU machine reaches no hub). `--tiny`: the same command on CPU with the tiny preset,
two steps, one process (what the suite runs, so the script cannot rot).

    python benchmarks/gpu/fit_smoke.py --out DIR [--tiny]

Prints one JSON line: exit code, wall seconds, the run's last train/loss and samples/s, peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def stage_config(out: Path, tiny: bool) -> Path:
    """The 0.8B fine-tune recipe, its data and parts replaced by synthetic pages and random weights."""
    from train_gpu import stand_in_tokenizer

    model = {"init": {"checkpoint": None}}
    trainer = {"max_steps": 20, "log_every_n_steps": 5, "limit_val_batches": 0, "enable_progress_bar": False}
    if tiny:
        model.update(preset="tiny", gradient_checkpointing=False)
        model["init"]["tokenizer"] = None
        trainer.update(
            accelerator="cpu", devices=1, strategy="auto", precision="32-true", max_steps=2, log_every_n_steps=1
        )
    else:
        model["init"]["tokenizer"] = stand_in_tokenizer(out / "tokenizer", with_h2ovl_tokens=False)
        trainer.update(
            accelerator="gpu",
            devices=1,
            precision="bf16-mixed",
            strategy={
                "class_path": "h2ovl.training.strategies.H2OVLFSDPStrategy",
                "init_args": {"param_dtype": "bfloat16"},
            },
        )
    trainer["default_root_dir"] = str(out / "run")
    trainer["logger"] = {
        "init_args": {"experiment_name": "gpu-fit-smoke", "tracking_uri": f"file:{out / 'mlruns'}", "log_model": False}
    }
    config = {
        "extends": [str(ROOT / "experiments/paper/0.8b/finetune.yaml")],
        "model": model,
        "data": {
            "train": None,
            "val": None,
            "synthetic": {"out": str(out / "synthetic"), "n": 200, "max_side": 1024},
            "batching": {"batch_size": 2, "global_batch_size": 2},
            "num_workers": 2,
        },
        "trainer": trainer,
        "checkpoint": {"every_n_train_steps": trainer["max_steps"]},
    }
    path = out / "fit.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    config = stage_config(args.out, args.tiny)
    # A file store needs no database packages on the GPU image (MLflow now asks for this to be said).
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    started = time.monotonic()
    with (args.out / "fit.log").open("w") as log:
        code = subprocess.call(
            [sys.executable, "-m", "h2ovl.cli", "fit", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    result = {"exit_code": code, "wall_s": round(time.monotonic() - started, 1)}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"file:{args.out / 'mlruns'}")
    experiment = client.get_experiment_by_name("gpu-fit-smoke")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    if runs:
        metrics = runs[0].data.metrics
        result.update(
            {
                k: metrics[k]
                for k in ("train/loss", "train/samples_per_sec", "train/device/samples_per_sec")
                if k in metrics
            }
        )
        result["run_status"] = runs[0].info.status
    print(json.dumps({"fit_smoke": result}))
    return code


if __name__ == "__main__":
    sys.exit(main())
