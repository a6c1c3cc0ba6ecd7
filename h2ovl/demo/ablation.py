"""The README's main job: the CPU ablation of `ablations/cpu-demo.yaml` (preprocessor x pixel shuffle, 2
seeds, a shared first stage), run through the sweep machinery, ending with its table and plots."""

from __future__ import annotations

from pathlib import Path

#: The spec ships with the repository (the package is installed from it, editable).
DEMO_SPEC = Path(__file__).resolve().parents[2] / "ablations" / "cpu-demo.yaml"
