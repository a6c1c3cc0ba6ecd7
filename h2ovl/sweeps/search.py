"""`strategy: optuna`: configurations sampled by Optuna from the spec's `search` space, `--parallel` at a
time, each run under every seed, the seeds' mean told back to the study. The study lives in an RDB
(`optuna.storage`; default SQLite in the sweep folder; a database URL lets many machines share it), so an
interrupted sweep resumes it: trials left running are run again, then sampling continues up to `trials`."""

from __future__ import annotations

from statistics import mean
from typing import TYPE_CHECKING, Any

from h2ovl.sweeps.spec import Trial, format_value, short

if TYPE_CHECKING:
    from h2ovl.sweeps.runner import Sweep


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
    return [Trial(name=f"{variant}/seed={seed}", variant=variant, seed=seed, overrides=dict(params),
                  axes={**params, "optuna.trial": number}) for seed in seeds]


def run_optuna(sweep: Sweep, parent: str) -> None:
    import optuna
    from optuna.trial import TrialState

    spec = sweep.spec
    storage = spec.optuna.get("storage") or f"sqlite:///{(sweep.folder / 'optuna.db').resolve()}"
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    name = spec.optuna.get("sampler", "tpe")
    if name not in samplers:
        raise ValueError(f"{spec.path}: optuna.sampler must be one of {sorted(samplers)}, got {name!r}")
    sweep.folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=sweep.sweep_id, storage=storage, load_if_exists=True,
                                direction="minimize" if spec.mode == "min" else "maximize",
                                sampler=samplers[name](seed=spec.seeds[0]))
    sweep.client.set_tag(parent, "optuna.storage", storage)
    space = distributions(spec.search)

    def evaluate(asked: list[optuna.trial.Trial | optuna.trial.FrozenTrial]) -> None:
        groups = [(t, trials_for(t.number, t.params, spec.seeds)) for t in asked]
        pending = [trial for _, group in groups for trial in group if sweep.state.trial(trial.name).get("status") != "finished"]
        sweep.launch(pending, parent)
        for study_trial, group in groups:
            values = [sweep.state.trial(trial.name).get("value") for trial in group]
            if all(v is not None for v in values):
                study.tell(study_trial.number, mean(values))
            else:
                study.tell(study_trial.number, state=TrialState.FAIL)

    interrupted = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    if interrupted:
        evaluate(interrupted)
    while True:
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))
        remaining = spec.trials - done
        if remaining <= 0:
            break
        evaluate([study.ask(space) for _ in range(min(sweep.options.parallel, remaining))])
    if any(t.state == TrialState.COMPLETE for t in study.trials):
        best = study.best_trial
        sweep.client.log_metric(parent, f"best/{spec.metric}", best.value)
        sweep.client.set_tag(parent, "optuna.best_params", str(best.params))
