"""Where a sweep's trials come from: an ask/tell source the runner consumes (`ask` a batch, run it, `tell`
the results), so the runner knows nothing of strategies and the strategies nothing of running.

- `FixedTrials`: grid and random, every trial known from the spec;
- `OptunaTrials`: configurations sampled by Optuna from the spec's `search` space, `--parallel` at a time,
  each run under every seed, the seeds' mean told back to the study. The study lives in an RDB
  (`optuna.storage`; default SQLite in the sweep folder; a database URL lets many machines share it), so
  an interrupted sweep resumes it: trials left running are run again, then sampling continues up to
  `trials`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from statistics import mean
from typing import Any

from h2ovl.sweeps.spec import SpecError, SweepSpec, Trial, format_value, short


def distributions(search: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for key, space in search.items():
        if "choices" in space:
            out[key] = CategoricalDistribution(list(space["choices"]))
        elif space.get("int"):
            out[key] = IntDistribution(int(space["low"]), int(space["high"]), log=bool(space.get("log")))
        else:
            out[key] = FloatDistribution(float(space["low"]), float(space["high"]), log=bool(space.get("log")))
    return out


def trials_for(number: int, params: dict[str, Any], seeds: list[int]) -> list[Trial]:
    variant = f"optuna-{number:03d}/" + "/".join(f"{short(k)}={format_value(v)}" for k, v in params.items())
    return [
        Trial(
            name=f"{variant}/seed={seed}",
            variant=variant,
            seed=seed,
            overrides=dict(params),
            axes={**params, "optuna.trial": number},
        )
        for seed in seeds
    ]


class FixedTrials:
    """`strategy: grid` and `random`: every trial is known from the spec; one batch of those not finished.

    Both sources: `ask()` gives the next batch (possibly empty: all finished) or None when there is no
    more; `tell(value_of)` hands back each asked trial's metric (None for a failure); `tags()` are
    recorded on the sweep's parent run."""

    def __init__(self, trials: list[Trial], finished: Callable[[Trial], bool]) -> None:
        self.trials, self.finished = trials, finished
        self._asked = False

    def ask(self) -> list[Trial] | None:
        if self._asked:
            return None
        self._asked = True
        return [t for t in self.trials if not self.finished(t)]

    def tell(self, value_of: Callable[[Trial], float | None]) -> None:
        """Nothing learns from results here."""

    def tags(self) -> dict[str, str]:
        return {}


class OptunaTrials:
    """`strategy: optuna`: configurations asked from an Optuna study, `parallel` at a time, each run under
    every seed; the seeds' mean is told back. Trials the study left running (an interrupted sweep) are
    asked again first."""

    def __init__(
        self, spec: SweepSpec, folder: Path, study_name: str, parallel: int, finished: Callable[[Trial], bool]
    ) -> None:
        import optuna

        samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
        name = spec.optuna.get("sampler", "tpe")
        if name not in samplers:
            raise SpecError(f"{spec.path}: optuna.sampler must be one of {sorted(samplers)}, got {name!r}")
        folder.mkdir(parents=True, exist_ok=True)
        self.storage = spec.optuna.get("storage") or f"sqlite:///{(folder / 'optuna.db').resolve()}"
        self.study = optuna.create_study(
            study_name=study_name,
            storage=self.storage,
            load_if_exists=True,
            direction="minimize" if spec.mode == "min" else "maximize",
            sampler=samplers[name](seed=spec.seeds[0]),
        )
        self.spec, self.parallel, self.finished = spec, parallel, finished
        self.space = distributions(spec.search)
        self._groups: list[tuple[Any, list[Trial]]] = []
        self._resumed = False

    def ask(self) -> list[Trial] | None:
        """The trials of the next configurations that are not finished yet; None once the study is done."""
        from optuna.trial import TrialState

        if not self._resumed:
            self._resumed = True
            asked = [t for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        else:
            asked = []
        if not asked:
            done = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))
            asked = [self.study.ask(self.space) for _ in range(min(self.parallel, self.spec.trials - done))]
        self._groups = [(t, trials_for(t.number, t.params, self.spec.seeds)) for t in asked]
        if not self._groups:
            return None
        return [trial for _, group in self._groups for trial in group if not self.finished(trial)]

    def tell(self, value_of: Callable[[Trial], float | None]) -> None:
        from optuna.trial import TrialState

        for study_trial, group in self._groups:
            values = [value_of(trial) for trial in group]
            if all(v is not None for v in values):
                self.study.tell(study_trial.number, mean(values))
            else:
                self.study.tell(study_trial.number, state=TrialState.FAIL)

    def tags(self) -> dict[str, str]:
        from optuna.trial import TrialState

        tags = {"optuna.storage": self.storage}
        if any(t.state == TrialState.COMPLETE for t in self.study.trials):
            tags["optuna.best_params"] = str(self.study.best_trial.params)
        return tags
