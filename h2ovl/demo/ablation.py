"""The README's main job: the CPU ablation of `ablations/cpu-demo.yaml` (preprocessor x pixel shuffle, 3
seeds, a shared first stage), run through the sweep machinery, ending with its table, plots, the verdict on
each of its claims and a gallery of held-out answers. `--long` runs `ablations/cpu-demo-long.yaml`, the same
design trained longer with more seeds."""

from __future__ import annotations

from pathlib import Path

#: The spec ships with the repository (the package is installed from it, editable).
DEMO_SPEC = Path(__file__).resolve().parents[2] / "ablations" / "cpu-demo.yaml"
DEMO_LONG_SPEC = DEMO_SPEC.with_name("cpu-demo-long.yaml")
