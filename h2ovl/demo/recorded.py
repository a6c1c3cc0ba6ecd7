"""The demo's recorded runs: every measured `make demo` of the current recipe (shared-stage seeds x CPU
kernels x machines), one row per fine-tune in `ablations/cpu-demo-runs.csv`, so a new run can be placed
against them. The README states the range these rows span and a test keeps the two equal.

The shared stages run once per demo, so the table's "±" (over the fine-tunes' seeds) cannot show how far
a run moves when those stages take another trajectory (another seed, another CPU's float summation order);
the recorded runs do. Each row carries the digest of the recipe it ran (`recipe_digest`): a recipe edited
without new recordings no longer matches them, and the demo then says so instead of printing a stale range.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from h2ovl.demo.ablation import DEMO_SPEC
from h2ovl.errors import UserError
from h2ovl.sweeps.claims import HELD, Claim, judge
from h2ovl.sweeps.results import Row, Table
from h2ovl.sweeps.spec import SweepSpec
from h2ovl.sweeps.trials import trial_config

RUNS_FILE = DEMO_SPEC.with_name("cpu-demo-runs.csv")
COLUMNS = ("run", "recipe", "machine", "kernel", "stage_seed", "variant", "seed", "cer")
#: Decimals of a fine-tune's CER in the file. A run is inside the recorded range when its mean is, to within
#: that rounding (a recorded run's own mean, read back from its unrounded metrics, must land inside).
CER_DECIMALS = 4
_ROUNDING = 0.5 * 10**-CER_DECIMALS


@dataclass
class RecordedRun:
    """One whole demo: its shared stages under `stage_seed`, then every variant's fine-tunes."""

    run: str
    recipe: str
    machine: str
    kernel: str
    stage_seed: int
    cer: dict[str, list[float]] = field(default_factory=dict)
    """variant -> CER of each fine-tune seed, in seed order."""

    def mean(self, variant: str) -> float:
        return statistics.fmean(self.cer[variant])

    def table(self, metric: str) -> Table:
        """This run's CERs as the sweep's table, so its claims are judged as the demo judged them."""
        rows = [Row(variant, values={metric: list(cers)}) for variant, cers in self.cer.items()]
        return Table(title=self.run, metrics=[metric], modes={metric: "min"}, baseline=None, rows=rows)


def robust_claims(runs: list[RecordedRun], spec: SweepSpec) -> list[Claim]:
    """The spec's claims that held (every seed beating every seed) in every one of `runs`."""
    return [
        claim
        for claim in spec.claims
        if runs and all(judge(run.table(spec.metric), claim, spec.metric).status == HELD for run in runs)
    ]


def recipe_digest(spec: SweepSpec) -> str:
    """What makes two demos the same recipe: every trial's resolved config (the shared stages' seed and where
    the data is written left out: recorded runs vary the one, `--out` moves the other) and the model
    preset's definition."""
    from h2ovl.model.config import PRESETS

    spec = dataclasses.replace(spec, stage_seed=spec.seeds[0])
    configs = [
        trial_config(spec, "demo", trial, Path("trial"), {}, None, None)
        for trial in (*spec.stage_trials(), *spec.expand())
    ]
    for config in configs:
        (config.get("data", {}).get("synthetic") or {}).pop("out", None)
        preset = PRESETS.get(config["model"].get("preset", ""))
        if preset is not None and "preprocessor" in config["model"]:
            config["model"]["preprocessor"] = _with_tile_size(config["model"]["preprocessor"], preset.vision.img_size)
    presets = sorted({config["model"].get("preset", "") for config in configs})
    payload = json.dumps(
        {"configs": configs, "presets": [repr(PRESETS.get(name)) for name in presets]}, sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _with_tile_size(preprocessor: Any, tile_size: int) -> Any:
    """A preprocessor's config with the tile size it gets from the model written out (choices included):
    a spec that leaves it to the model is the same recipe as one that states the model's."""
    if not isinstance(preprocessor, dict):
        return preprocessor
    init_args = dict(preprocessor.get("init_args") or {})
    if "choices" in init_args:
        init_args["choices"] = [_with_tile_size(choice, tile_size) for choice in init_args["choices"]]
    else:
        init_args.setdefault("tile_size", tile_size)
    return {**preprocessor, "init_args": init_args}


def load_runs(path: Path = RUNS_FILE) -> list[RecordedRun]:
    """The recorded runs, in file order; a malformed row names the file and line."""
    runs: dict[str, RecordedRun] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise UserError(f"{path}: columns must be {','.join(COLUMNS)}, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                described = RecordedRun(
                    row["run"], row["recipe"], row["machine"], row["kernel"], int(row["stage_seed"])
                )
                run = runs.setdefault(row["run"], described)
                if (run.recipe, run.machine, run.kernel, run.stage_seed) != (
                    described.recipe,
                    described.machine,
                    described.kernel,
                    described.stage_seed,
                ):
                    raise ValueError(f"run {row['run']!r} is described differently on an earlier line")
                run.cer.setdefault(row["variant"], []).append(float(row["cer"]))
            except ValueError as error:
                raise UserError(f"{path}:{line}: {error}") from None
    return list(runs.values())


def variant_ranges(runs: list[RecordedRun]) -> dict[str, tuple[float, float]]:
    """variant -> (lowest, highest) mean CER over the runs."""
    variants = {variant for run in runs for variant in run.cer}
    return {
        variant: (
            min(run.mean(variant) for run in runs if variant in run.cer),
            max(run.mean(variant) for run in runs if variant in run.cer),
        )
        for variant in sorted(variants)
    }


def placement(means: dict[str, float], spec: SweepSpec, path: Path = RUNS_FILE) -> str:
    """Where this run's mean CER per variant falls against the recorded runs of the same recipe: the text
    the demo prints under its table."""
    if not path.is_file():
        return f"No recorded runs to compare with ({path.name} is missing)."
    digest = recipe_digest(spec)
    runs = [run for run in load_runs(path) if run.recipe == digest]
    if not runs:
        return (
            f"No recorded runs of this recipe (digest {digest}) in {path.name}: the recipe changed since the "
            "runs in docs/results.md were measured."
        )
    machines = sorted({run.machine for run in runs})
    kernels = sorted({run.kernel for run in runs})
    seeds = sorted({run.stage_seed for run in runs})
    lines = [
        f"Recorded runs of this recipe ({len(runs)}: shared-stage seeds {', '.join(map(str, seeds))} x CPU kernels "
        f"{', '.join(kernels)} on {len(machines)} machine{'s' if len(machines) > 1 else ''}; docs/results.md), "
        "mean CER over seeds:"
    ]
    for variant, (low, high) in variant_ranges(runs).items():
        here = means.get(variant)
        where = (
            ""
            if here is None
            else (
                f"; this run {here:.3f}, "
                + ("inside" if low - _ROUNDING <= here <= high + _ROUNDING else "OUTSIDE")
                + " the recorded range"
            )
        )
        lines.append(f"- {variant}: {low:.3f} to {high:.3f}{where}")
    robust = robust_claims(runs, spec)
    lines.append(
        "Held in every recorded run: " + ("; ".join(claim.text for claim in robust) if robust else "no claim") + "."
    )
    return "\n".join(lines)
