"""The README's main job: the CPU ablation of `ablations/cpu-demo.yaml` (preprocessor x pixel shuffle, 3
seeds, shared stages first), run through the sweep machinery, ending with its table, plots, the verdict on
each of its claims and a gallery of held-out answers. `--long` runs `ablations/cpu-demo-long.yaml`: the
earlier design without the shared stage on strips, trained twice as long with more seeds."""

from __future__ import annotations

from pathlib import Path

from h2ovl.sweeps.spec import SweepSpec, load_spec

#: The spec ships with the repository (the package is installed from it, editable).
DEMO_SPEC = Path(__file__).resolve().parents[2] / "ablations" / "cpu-demo.yaml"
DEMO_LONG_SPEC = DEMO_SPEC.with_name("cpu-demo-long.yaml")


def demo_spec(long: bool, out: Path, stage_seed: int | None = None) -> SweepSpec:
    """The demo's spec with its synthetic data written under `out` beside its sweep (the specs name
    `outputs/demo...`, which is where `make demo` puts everything), so `h2ovl demo --out DIR` keeps the
    whole demo but the MLflow store in DIR."""
    spec = load_spec(DEMO_LONG_SPEC if long else DEMO_SPEC)
    if stage_seed is not None:
        spec.stage_seed = stage_seed
    for overrides in [spec.overrides, *(stage.get("overrides", {}) for stage in spec.init_stages)]:
        synthetic = overrides.get("data.synthetic")
        if isinstance(synthetic, dict) and "out" in synthetic:
            overrides["data.synthetic"] = {**synthetic, "out": str(out / Path(synthetic["out"]).name)}
    return spec
