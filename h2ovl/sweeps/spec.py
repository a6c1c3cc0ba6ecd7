"""Sweep specs (YAML under `sweeps/` and `ablations/`) and the trials they expand to.

name: lr-sweep                        # the sweep id (and default MLflow experiment)
base: ../experiments/cpu/tiny.yaml    # the experiment every trial runs (relative to this file)
metric: {name: val/loss, mode: min}   # what the sweep optimises and the table leads with
report: [val/cer/exact_match]         # more table columns
baseline: dynamic                     # the variant the table's differences are against
seeds: [0, 1]                         # every configuration runs once per seed
stage_seed: 0                         # the init stages' seed (default: the first of `seeds`)
overrides: {trainer.max_steps: 300}   # dotted keys set in every trial (whole values replaced)
init_stage: {overrides: {...}}        # optional: one run first; every trial starts from its last.ckpt;
                                      # a list of them is a curriculum, each from the one before
variants: {fixed: {model.preprocessor: {...}}, dynamic: {}}   # named sets of overrides
grid: {model.optim.lr: [1.0e-4, 3.0e-4]}    # crossed with the variants
strategy: grid                        # grid | random | optuna
search: {model.optim.lr: {low: 1.0e-5, high: 1.0e-3, log: true}, model.optim.weight_decay: {choices: [0, 0.01]}}
trials: 8                             # random / optuna: configurations to sample
optuna: {storage: null, sampler: tpe} # RDB URL (default: SQLite in the sweep folder)
slurm: {partition: gpu, gpus_per_trial: 8, nodes: 1, time_min: 240, cpus_per_task: 16, cluster: slurm}
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from h2ovl.errors import SpecError, read_text_file
from h2ovl.sweeps.claims import Claim, parse_claims

STRATEGIES = ("grid", "random", "optuna")
INIT_STAGE = "init-stage"  # the init stages' trial names (and their MLflow runs' role tag)
_KEYS = {
    "name",
    "base",
    "experiment",
    "metric",
    "report",
    "baseline",
    "seeds",
    "stage_seed",
    "overrides",
    "init_stage",
    "variants",
    "grid",
    "strategy",
    "search",
    "trials",
    "optuna",
    "slurm",
    "claims",
}


@dataclass(frozen=True)
class Trial:
    """One `h2ovl fit` process: a configuration under one seed."""

    name: str
    """`<variant>/<axis=value>.../seed=<s>`, unique in the sweep."""
    variant: str
    """The configuration without the seed: the table's row."""
    seed: int
    overrides: dict[str, Any]
    axes: dict[str, Any] = field(default_factory=dict)
    """The axis values that define the variant (for tags)."""

    @property
    def folder(self) -> str:
        return self.folder_name(self.name)

    @staticmethod
    def folder_name(name: str) -> str:
        """The trial's folder under the sweep's `trials/`."""
        return name.replace("/", "__").replace(" ", "_")


@dataclass
class SweepSpec:
    path: Path
    name: str
    base: Path
    experiment: str
    metric: str
    mode: str
    report: list[str]
    baseline: str | None
    seeds: list[int]
    stage_seed: int
    """The init stages' seed: they run once, so a robustness study varies it apart from the trials' seeds."""
    overrides: dict[str, Any]
    init_stages: list[dict[str, Any]]
    """Runs before the trials, in order, each starting from the one before; the last one's checkpoint
    starts every trial (`init_stage:` one mapping, or a list of them)."""
    variants: dict[str, dict[str, Any]]
    grid: dict[str, list[Any]]
    strategy: str
    search: dict[str, dict[str, Any]]
    trials: int
    optuna: dict[str, Any]
    slurm: dict[str, Any]
    claims: list[Claim] = field(default_factory=list)
    """Conclusions to judge on the finished table (`h2ovl.sweeps.claims`)."""

    # -- trials -----------------------------------------------------------------------------------------
    def configurations(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(variant name, overrides, axis values) per configuration, before seeds. Optuna's come one by one
        from its sampler instead (see `h2ovl.sweeps.search`)."""
        variants = self.variants or {"": {}}
        grid_keys = list(self.grid)
        points = list(itertools.product(*(self.grid[k] for k in grid_keys))) or [()]
        if self.strategy == "random":
            rng = random.Random(f"{self.name}/search")
            samples = [
                {key: sample_value(space, rng) for key, space in self.search.items()} for _ in range(self.trials)
            ]
        else:
            samples = [{}]
        out = []
        for (variant, variant_overrides), point, (index, sample) in itertools.product(
            variants.items(), points, enumerate(samples)
        ):
            axes = {**dict(zip(grid_keys, point)), **sample}
            parts = [variant] if variant else []
            parts += [f"{short(k)}={format_value(v)}" for k, v in zip(grid_keys, point)]
            if self.strategy == "random":
                parts.append(f"r{index:03d}")
            name = "/".join(parts) or "base"
            axes_tags = {"variant": variant, **axes} if variant else axes
            out.append((name, {**variant_overrides, **axes}, axes_tags))
        return out

    def stage_trials(self) -> list[Trial]:
        """The init stages as trials, under `stage_seed`: `init-stage`, or `init-stage-1`, `init-stage-2`...
        for a curriculum."""
        names = (
            [INIT_STAGE]
            if len(self.init_stages) == 1
            else [f"{INIT_STAGE}-{k}" for k in range(1, len(self.init_stages) + 1)]
        )
        return [
            Trial(name=name, variant=name, seed=self.stage_seed, overrides=dict(stage.get("overrides") or {}))
            for name, stage in zip(names, self.init_stages)
        ]

    def expand(self) -> list[Trial]:
        if self.strategy == "optuna":
            raise SpecError(f"{self.path}: optuna trials are sampled as the sweep runs; there is no fixed list")
        return [
            Trial(name=f"{variant}/seed={seed}", variant=variant, seed=seed, overrides=overrides, axes=axes)
            for variant, overrides, axes in self.configurations()
            for seed in self.seeds
        ]


def short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def sample_value(space: dict[str, Any], rng: random.Random) -> Any:
    if "choices" in space:
        return rng.choice(space["choices"])
    low, high = float(space["low"]), float(space["high"])
    if space.get("log"):
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return int(round(value)) if space.get("int") else value


def _check_space(path: Path, key: str, space: Any) -> None:
    if not isinstance(space, dict) or not ("choices" in space or {"low", "high"} <= set(space)):
        raise SpecError(f"{path}: search.{key} must be {{low, high[, log, int]}} or {{choices: [...]}}, got {space!r}")
    if "choices" not in space and float(space["low"]) >= float(space["high"]):
        raise SpecError(f"{path}: search.{key}: low must be below high")
    if space.get("log") and float(space.get("low", 1)) <= 0:
        raise SpecError(f"{path}: search.{key}: a log range needs low > 0")


_UNSAFE_NAME = re.compile(r"['\"`\\\x00-\x1f\x7f]")


def _check_name(path: Path, what: str, name: str) -> None:
    """Names become folder names, MLflow run names, tags and search-filter values: no quotes, backslashes
    or control characters."""
    if not name or _UNSAFE_NAME.search(name):
        raise SpecError(
            f"{path}: {what} {name!r} may not be empty or hold quotes, backticks, backslashes or control characters"
        )


def _init_stages(path: Path, raw: Any) -> list[dict[str, Any]]:
    stages = [] if raw is None else raw if isinstance(raw, list) else [raw]
    if not all(isinstance(stage, dict) for stage in stages) or (isinstance(raw, list) and not raw):
        raise SpecError(f"{path}: init_stage must be a mapping (with `overrides`) or a non-empty list of them")
    return [dict(stage) for stage in stages]


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path).resolve()
    if not path.is_file():
        raise SpecError(f"sweep spec {path} does not exist")
    try:
        raw = yaml.safe_load(read_text_file(path, SpecError, "the sweep spec"))
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a sweep spec is a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise SpecError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    for key in ("name", "base", "metric"):
        if key not in raw:
            raise SpecError(f"{path}: missing {key!r}")
    base = (path.parent / raw["base"]).resolve()
    if not base.is_file():
        raise SpecError(f"{path}: base experiment {base} does not exist")
    metric = raw["metric"]
    metric = {"name": metric} if isinstance(metric, str) else metric
    if not isinstance(metric, dict) or "name" not in metric or metric.get("mode", "min") not in ("min", "max"):
        raise SpecError(f"{path}: metric must be a name or {{name, mode: min|max}}, got {raw['metric']!r}")
    strategy = raw.get("strategy", "grid")
    if strategy not in STRATEGIES:
        raise SpecError(f"{path}: strategy must be one of {STRATEGIES}, got {strategy!r}")
    seeds = raw.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise SpecError(f"{path}: seeds must be a non-empty list of distinct integers, got {seeds!r}")
    stage_seed = raw.get("stage_seed", seeds[0])
    if not isinstance(stage_seed, int) or isinstance(stage_seed, bool):
        raise SpecError(f"{path}: stage_seed must be an integer, got {stage_seed!r}")
    variants = raw.get("variants") or {}
    if not isinstance(variants, dict) or not all(isinstance(v, dict) or v is None for v in variants.values()):
        raise SpecError(f"{path}: variants must map names to mappings of overrides")
    variants = {str(k): dict(v or {}) for k, v in variants.items()}
    for name in variants:
        if "/" in name or "=" in name:
            raise SpecError(f"{path}: variant name {name!r} may not hold '/' or '='")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise SpecError(f"{path}: grid must map dotted keys to non-empty lists of values")
    search = raw.get("search") or {}
    for key, space in search.items():
        _check_space(path, key, space)
    if strategy in ("random", "optuna") and not search:
        raise SpecError(f"{path}: strategy {strategy!r} needs a `search` space")
    trials = raw.get("trials", 0)
    if strategy in ("random", "optuna") and (not isinstance(trials, int) or trials < 1):
        raise SpecError(f"{path}: strategy {strategy!r} needs `trials` (a positive integer)")
    baseline = raw.get("baseline")
    spec = SweepSpec(
        path=path,
        name=str(raw["name"]),
        base=base,
        experiment=str(raw.get("experiment") or raw["name"]),
        metric=metric["name"],
        mode=metric.get("mode", "min"),
        report=list(raw.get("report") or []),
        baseline=baseline,
        seeds=seeds,
        stage_seed=stage_seed,
        overrides=dict(raw.get("overrides") or {}),
        init_stages=_init_stages(path, raw.get("init_stage")),
        variants=variants,
        grid=grid,
        strategy=strategy,
        search=search,
        trials=int(trials or 0),
        optuna=dict(raw.get("optuna") or {}),
        slurm=dict(raw.get("slurm") or {}),
    )
    _check_name(path, "name", spec.name)
    if strategy != "optuna":  # optuna's names are made of the search keys and numbers, checked with the keys
        for variant, _, _ in spec.configurations():
            _check_name(path, "variant", variant)
    for key in search:
        _check_name(path, "search key", key)
    if baseline is not None and strategy != "optuna" and baseline not in {c[0] for c in spec.configurations()}:
        raise SpecError(
            f"{path}: baseline {baseline!r} is not one of the variants {[c[0] for c in spec.configurations()]}"
        )
    try:
        names = {c[0] for c in spec.configurations()} if strategy != "optuna" else set()
        spec.claims = parse_claims(raw.get("claims"), names, str(path))
    except ValueError as error:
        raise SpecError(str(error)) from None
    return spec
