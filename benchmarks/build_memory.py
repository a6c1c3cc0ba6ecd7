"""Peak host memory of building a model from pretrained parts, as every rank of a training run does: the
InternViT weights file, the LLM directory and the tokenizer are written first (random values, the published
layouts), then a fresh process builds `H2OVLModule` from them and reports its peak resident memory (VmHWM:
the high-water mark of the process's own memory, file pages it touched included).

    python benchmarks/build_memory.py [--preset h2ovl-2b] [--parts DIR]     # DIR is kept for the next run

The LLM comes through transformers' `from_pretrained` (built on the meta device, its safetensors memory-
mapped); the ViT is built on the meta device and takes the loaded tensors, so no random copy sits beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_BUILD = r"""
import json, sys, time

def high_water_gib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 2**20

from h2ovl.training.module import H2OVLModule
from h2ovl.training.settings import Initialization
imported = high_water_gib()
start = time.perf_counter()
preset, folder = sys.argv[1], sys.argv[2]
parts = Initialization(vision_weights=f"{folder}/internvit.safetensors", llm=f"{folder}/llm",
                       tokenizer=f"{folder}/tokenizer")
module = H2OVLModule(preset=preset, init=parts)
print(json.dumps({
    "preset": preset,
    "peak_gib": round(high_water_gib(), 2),
    "after_imports_gib": round(imported, 2),
    "parameters_gib": round(sum(p.numel() * p.element_size() for p in module.parameters()) / 2**30, 2),
    "build_s": round(time.perf_counter() - start, 1),
}))
"""


def write_parts(folder: Path, preset: str) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_real_shapes import _write_parts  # the suite's writer of the published layouts

    _write_parts(folder, preset.removeprefix("h2ovl-"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="h2ovl-2b", choices=["h2ovl-0.8b", "h2ovl-2b"])
    parser.add_argument("--parts", type=Path, help="where the parts are written (kept); default: a temporary folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.parts or Path(scratch) / "parts"
        if not (folder / "llm").is_dir():
            write_parts(folder, args.preset)
        # A new process: the writer's own memory must not count (VmHWM starts afresh at exec).
        result = subprocess.run(
            [sys.executable, "-c", _BUILD, args.preset, str(folder)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            return result.returncode
        print(json.dumps(json.loads(result.stdout.strip().splitlines()[-1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
