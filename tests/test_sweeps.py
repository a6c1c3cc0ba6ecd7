"""Sweeps end to end: specs and their errors, trials as real `h2ovl fit` processes under an MLflow parent
run, failure and resume, Optuna with its RDB study, the SLURM submission path through submitit's local
executor, and tables/plots rebuilt from MLflow alone; every spec under sweeps/ and ablations/ expands."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from h2ovl.cli import main
from h2ovl.errors import SettingError
from h2ovl.sweeps import SpecError, Sweep, SweepOptions, load_spec
from h2ovl.sweeps.claims import Claim, claims_text, judge
from h2ovl.sweeps.plots import cost_points, validation_curves
from h2ovl.sweeps.results import Row, Table, build_table
from h2ovl.sweeps.slurm import executor_parameters, submit_array
from h2ovl.sweeps.trials import trial_config, trial_tags
from h2ovl.training.lightning_cli import ParseOnlyCLI

from training_runs import ROOT

FIXED = {"class_path": "h2ovl.preprocessing.FixedResize", "init_args": {"tile_size": 64}}
DYNAMIC = {
    "class_path": "h2ovl.preprocessing.DynamicResolution",
    "init_args": {"tile_size": 64, "max_tiles": 3, "use_thumbnail": True},
}


def tiny_overrides(tmp: Path) -> dict:
    return {
        "data.synthetic": {"out": str(tmp / "synthetic"), "n": 24, "max_side": 160, "tasks": ["digits_strip", "text"]},
        "data.batching.batch_size": 2,
        "data.batching.max_length": 256,
        "data.val_limit": 4,
        "model.val_generation": {"samples": 3, "max_new_tokens": 4},
        "trainer.max_steps": 2,
        "trainer.val_check_interval": 2,
        "trainer.limit_val_batches": 2,
        "trainer.log_every_n_steps": 1,
        "trainer.enable_progress_bar": False,
        "trainer.enable_model_summary": False,
        "checkpoint": {"every_n_train_steps": 2},
        "throughput": {"window_size": 2},
        "best": {"monitor": None},
    }


def write_spec(tmp: Path, **fields) -> Path:
    spec = {
        "name": "t",
        "base": str(ROOT / "experiments/cpu/tiny.yaml"),
        "metric": {"name": "val/loss", "mode": "min"},
        "overrides": tiny_overrides(tmp),
        **fields,
    }
    path = tmp / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def options(tmp: Path, **fields) -> SweepOptions:
    return SweepOptions(out=str(tmp / "sweeps"), tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}", **fields)


def client(tmp: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")


# -- specs --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"colour": 1}, "unknown keys \\['colour'\\]"),
        ({"base": "missing.yaml"}, "base experiment .*missing.yaml does not exist"),
        ({"strategy": "bayes"}, "strategy must be one of"),
        ({"seeds": [0, 0]}, "seeds must be a non-empty list of distinct integers"),
        ({"stage_seed": "one"}, "stage_seed must be an integer"),
        ({"variants": {"a": {}}, "baseline": "b"}, "baseline 'b' is not one of the variants"),
        (
            {"strategy": "random", "search": {"model.optim.lr": {"low": 1, "high": 0}}, "trials": 2},
            "search.model.optim.lr: low must be below high",
        ),
        ({"strategy": "optuna", "trials": 2}, "needs a `search` space"),
        ({"metric": {"name": "x", "mode": "up"}}, "metric must be a name or"),
    ],
)
def test_bad_specs_name_the_file_and_key(tmp_path: Path, fields: dict, message: str):
    with pytest.raises(SpecError, match=rf"t\.yaml: .*{message}"):
        load_spec(write_spec(tmp_path, **fields))


def test_variants_grid_and_seeds_expand_to_named_trials(tmp_path: Path):
    spec = load_spec(
        write_spec(
            tmp_path,
            variants={"fixed": {"model.preprocessor": FIXED}, "dynamic": {"model.preprocessor": DYNAMIC}},
            grid={"model.optim.lr": [0.001, 0.0003]},
            seeds=[0, 1],
        )
    )
    trials = spec.expand()
    assert len(trials) == 8 and len({t.name for t in trials}) == 8
    assert trials[0].name == "fixed/lr=0.001/seed=0" and trials[0].variant == "fixed/lr=0.001"
    assert trials[0].overrides == {"model.preprocessor": FIXED, "model.optim.lr": 0.001}
    assert trials[0].axes == {"variant": "fixed", "model.optim.lr": 0.001}


def test_random_search_samples_inside_its_ranges_reproducibly(tmp_path: Path):
    fields = {
        "strategy": "random",
        "trials": 5,
        "search": {
            "model.optim.lr": {"low": 1e-5, "high": 1e-2, "log": True},
            "data.batching.batch_size": {"choices": [2, 4]},
        },
    }
    first, second = (
        load_spec(write_spec(tmp_path, **fields)).expand(),
        load_spec(write_spec(tmp_path, **fields)).expand(),
    )
    assert [t.overrides for t in first] == [t.overrides for t in second] and len(first) == 5
    assert all(
        1e-5 <= t.overrides["model.optim.lr"] <= 1e-2 and t.overrides["data.batching.batch_size"] in (2, 4)
        for t in first
    )
    assert len({t.overrides["model.optim.lr"] for t in first}) == 5


def test_trial_config_replaces_whole_values_and_tags_the_run(tmp_path: Path):
    spec = load_spec(write_spec(tmp_path, variants={"fixed": {"model.preprocessor": FIXED}}))
    (trial,) = spec.expand()
    tags = trial_tags("sid", trial, "parent123")
    config = trial_config(spec, "sid", trial, tmp_path / "root", tags, None, "/x/last.ckpt")
    assert config["model"]["preprocessor"] == FIXED  # replaced, not merged with a base preprocessor
    assert (
        config["model"]["init"]["checkpoint"] == "/x/last.ckpt"
        and config["seed_everything"] == 0
        and config["data"]["seed"] == 0
    )
    assert config["trainer"]["max_steps"] == 2 and config["model"]["preset"] == "tiny"  # the base, composed
    logger = config["trainer"]["logger"]["init_args"]
    assert logger["experiment_name"] == "t" and logger["sweep_id"] == "sid"
    assert logger["tags"]["mlflow.parentRunId"] == "parent123" and logger["tags"]["axis.variant"] == "fixed"


@pytest.mark.parametrize(
    "spec", sorted((ROOT / "sweeps").glob("*.yaml")) + sorted((ROOT / "ablations").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_specs_load_and_their_trials_parse_against_the_cli(spec: Path, tmp_path: Path):
    loaded = load_spec(spec)
    trials = loaded.expand() if loaded.strategy != "optuna" else []
    assert loaded.strategy == "optuna" or len(loaded.seeds) >= 2 and trials
    for trial in trials:
        config = trial_config(loaded, "x", trial, tmp_path, {}, None, None)
        assert config["seed_everything"] == trial.seed
        if trial.seed == loaded.seeds[0]:  # every variant's config, once, through the real parser
            cli = ParseOnlyCLI(args=["--config", yaml.safe_dump(config)], run=False)
            assert cli.config.model.preset


# -- running ------------------------------------------------------------------------------------------
@pytest.mark.slow  # whole sweeps / killed runs as subprocesses: `make test-all` and CI
def test_sweep_runs_trials_records_failures_resumes_and_tabulates(tmp_path: Path, capsys: pytest.CaptureFixture):
    variants = {
        "fixed": {"model.preprocessor": FIXED},
        "dynamic": {"model.preprocessor": DYNAMIC},
        "broken": {"model.optim.lr": "not-a-number"},
    }
    path = write_spec(
        tmp_path,
        variants=variants,
        seeds=[0, 1],
        baseline="dynamic",
        report=["val/cer/cer"],
        init_stage={"overrides": {"trainer.max_steps": 2}},
    )
    # A dry run parses every trial's config with the real parser: the broken variant is named there.
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "sweeps")]) == 2
    assert "trial broken/seed=0" in capsys.readouterr().err
    assert main(["sweep", str(path), "--dry-run", "--only", "fixed", "dynamic", "--out", str(tmp_path / "sweeps")]) == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [t["trial"] for t in plan["trials"]][:2] == ["init-stage", "fixed/seed=0"] and len(plan["trials"]) == 5
    assert not (tmp_path / "mlflow.db").exists()  # a dry run touches nothing

    summary = Sweep(load_spec(path), options(tmp_path, progress_every=0.5)).run()
    assert summary["finished"] == 5 and summary["failed"] == ["broken/seed=0", "broken/seed=1"]
    # running trials report their progress (their own output goes to their logs)
    progress = capsys.readouterr().out
    assert re.search(
        r"^\[t\] init-stage: (starting|step \d+/2, train/loss \d+\.\d+(, ETA \w+)?) \(\d+ s\)$", progress, re.M
    ), progress
    state = json.loads((tmp_path / "sweeps/t/state.json").read_text())
    assert "not-a-number" in state["trials"]["broken/seed=0"]["error"]
    init_ckpt = state["init_checkpoint"]
    trial_yaml = yaml.safe_load((tmp_path / "sweeps/t/trials/fixed__seed=1/config.yaml").read_text())
    assert trial_yaml["model"]["init"]["checkpoint"] == init_ckpt and Path(init_ckpt).is_file()

    mlflow = client(tmp_path)
    experiment = mlflow.get_experiment_by_name("t").experiment_id
    parent = mlflow.get_run(summary["parent_run_id"])
    assert (
        parent.data.tags["role"] == "sweep"
        and parent.info.status == "FAILED"
        and parent.data.metrics["sweep/failed"] == 2
    )
    fixed_mean = sum(state["trials"][f"fixed/seed={s}"]["value"] for s in (0, 1)) / 2
    dynamic_mean = sum(state["trials"][f"dynamic/seed={s}"]["value"] for s in (0, 1)) / 2
    best_variant, best_value = min((("fixed", fixed_mean), ("dynamic", dynamic_mean)), key=lambda item: item[1])
    assert parent.data.tags["sweep.best_variant"] == best_variant
    assert parent.data.metrics["best/val/loss"] == pytest.approx(best_value)
    # artifacts live beside the SQLite store, not in ./mlruns of whatever folder the sweep ran from
    assert parent.info.artifact_uri.startswith((tmp_path / "mlruns").resolve().as_uri())
    children = mlflow.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 5  # init stage and 4 trials (a broken config fails before its run exists)
    fixed0 = next(r for r in children if r.data.tags.get("trial") == "fixed/seed=0")
    assert (
        fixed0.data.tags["axis.variant"] == "fixed"
        and fixed0.data.tags["sweep_id"] == "t"
        and fixed0.info.status == "FINISHED"
    )

    # Resume: finished trials are skipped (no new runs), failed ones are tried again and stay recorded.
    capsys.readouterr()
    again = Sweep(load_spec(path), options(tmp_path)).run()
    assert again["finished"] == 5 and len(again["failed"]) == 2
    resumed = capsys.readouterr().out
    assert "4 finished trials skipped" in resumed and "start init-stage" not in resumed
    assert len(mlflow.search_runs([experiment], "tags.role = 'trial'")) == 4
    assert json.loads((tmp_path / "sweeps/t/state.json").read_text())["trials"]["broken/seed=1"]["attempts"] == 2

    # The table, from MLflow alone.
    out = tmp_path / "table"
    assert (
        main(["table", "--sweep", "t", "--out", str(out), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 0
    )
    printed = capsys.readouterr().out
    assert "| dynamic | 2 | " in printed and "| baseline |" in printed
    rows = {r["variant"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert set(rows) == {"dynamic", "fixed"}  # the broken configs failed before MLflow had a run for them
    fixed_losses = [r.data.metrics["val/loss"] for r in children if r.data.tags.get("variant") == "fixed"]
    assert float(rows["fixed"]["val/loss mean"]) == pytest.approx(sum(fixed_losses) / 2)
    assert float(rows["fixed"]["val/loss diff"]) == pytest.approx(
        float(rows["fixed"]["val/loss mean"]) - float(rows["dynamic"]["val/loss mean"])
    )
    assert float(rows["fixed"]["visual_tokens_per_sample"]) < float(
        rows["dynamic"]["visual_tokens_per_sample"]
    )  # one tile vs up to 3 + thumbnail
    assert float(rows["fixed"]["samples_per_s"]) > 0
    assert "\\begin{tabular}" in (out / "table.tex").read_text() and "$\\pm$" in (out / "table.tex").read_text()
    for plot in ("cost_vs_metric.png", "validation_curves.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    artifacts = {a.path for a in mlflow.list_artifacts(parent.info.run_id, "results")}
    assert {"results/table.md", "results/table.csv", "results/table.tex", "results/cost_vs_metric.png"} <= artifacts

    # The same spec run again into this store (new output folder): its table holds its own trials only.
    rerun = mlflow.create_run(experiment, tags=parent.data.tags)
    rerun_trial = mlflow.create_run(
        experiment, tags={**fixed0.data.tags, "mlflow.parentRunId": rerun.info.run_id}
    ).info.run_id
    for key, value in {**fixed0.data.metrics, "val/loss": 123.0}.items():
        mlflow.log_metric(rerun_trial, key, value)
    mlflow.set_terminated(rerun_trial)
    assert (
        main(
            [
                "table",
                "--sweep",
                "t",
                "--out",
                str(tmp_path / "rerun"),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )
        == 0
    )
    rows = {r["variant"]: r for r in csv.DictReader((tmp_path / "rerun/table.csv").open())}
    assert set(rows) == {"fixed"} and float(rows["fixed"]["val/loss mean"]) == 123.0

    assert (
        main(
            [
                "table",
                "--experiment",
                "t",
                "--metric",
                "val/loss",
                "--out",
                str(tmp_path / "by-experiment"),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )
        == 0
    )
    assert "init-stage" in (tmp_path / "by-experiment/table.md").read_text()


def test_plots_draw_variants_that_coincide_once():
    def run(run_id: str) -> SimpleNamespace:
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id))

    histories = {"d0": [(200, 0.55), (400, 0.45)], "d1": [(200, 0.56), (400, 0.50)], "f0": [(200, 0.8), (400, 0.7)]}
    client = SimpleNamespace(
        get_metric_history=lambda run_id, metric: [SimpleNamespace(step=s, value=v) for s, v in histories[run_id]]
    )
    rows = [
        Row("dynamic", [run("d0"), run("d1")], values={"cer": [0.45, 0.50]}, visual_tokens=48.0),
        Row("msac", [run("d0"), run("d1")], values={"cer": [0.45, 0.50]}, visual_tokens=48.0),
        Row("fixed", [run("f0")], values={"cer": [0.7]}, visual_tokens=16.0),
        Row("no-cost", values={"cer": [0.1]}),
    ]
    table = Table("t", ["cer"], {"cer": "min"}, "dynamic", rows)
    points = cost_points(table, "cer")
    assert [(x, label) for x, _, _, label in points] == [(48.0, "dynamic = msac"), (16.0, "fixed")]
    assert points[0][1] == pytest.approx(0.475) and points[0][2] == pytest.approx(0.0354, abs=1e-4)
    curves = validation_curves(client, table, "cer")
    assert curves == [
        ("dynamic = msac", [200, 400], [[0.55, 0.56], [0.45, 0.50]]),
        ("fixed", [200, 400], [[0.8], [0.7]]),
    ]


def test_a_rows_values_read_in_seed_order_whatever_order_the_runs_started():
    """The claims print each variant's values per seed: seed 2 finishing first must not read as seed 0."""

    def run(seed: int, started: int, cer: float) -> SimpleNamespace:
        return SimpleNamespace(
            info=SimpleNamespace(run_id=f"r{seed}", run_name=f"a/seed={seed}", status="FINISHED", start_time=started),
            data=SimpleNamespace(tags={"variant": "a", "seed": str(seed)}, metrics={"cer": cer}),
        )

    client = SimpleNamespace(get_metric_history=lambda run_id, metric: [])
    table = build_table(
        client, [run(2, 100, 0.3), run(0, 300, 0.1), run(1, 200, 0.2)], ["cer"], {"cer": "min"}, None, "t"
    )
    assert table.rows[0].values["cer"] == [0.1, 0.2, 0.3]


@pytest.mark.slow  # whole sweeps / killed runs as subprocesses: `make test-all` and CI
def test_optuna_ablation_keeps_its_study_in_sqlite_resumes_and_ends_with_its_table(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    import optuna

    path = write_spec(
        tmp_path,
        name="opt",
        strategy="optuna",
        trials=2,
        seeds=[0],
        search={"model.optim.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
    )
    assert (
        main(
            [
                "ablate",
                str(path),
                "--out",
                str(tmp_path / "sweeps"),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(printed[-1])
    assert summary["finished"] == 2 and not summary["failed"]
    assert sum(line.startswith("| optuna-") for line in printed) == 2  # the table, one row per configuration
    assert Path(summary["cost"]).is_file() and Path(summary["curves"]).is_file() and Path(summary["latex"]).is_file()
    storage = f"sqlite:///{(tmp_path / 'sweeps/opt/optuna.db').resolve()}"
    study = optuna.load_study(study_name="opt", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    runs = client(tmp_path).search_runs(
        [client(tmp_path).get_experiment_by_name("opt").experiment_id], "tags.role = 'trial'"
    )
    assert sorted(float(r.data.tags["axis.model.optim.lr"]) for r in runs) == sorted(
        t.params["model.optim.lr"] for t in study.trials
    )
    assert sorted(r.data.metrics["val/loss"] for r in runs) == pytest.approx(sorted(t.value for t in study.trials))
    Sweep(load_spec(path), options(tmp_path)).run()  # resumed: the study is complete, nothing more runs
    assert len(optuna.load_study(study_name="opt", storage=storage).trials) == 2


def test_slurm_submission_through_submitits_local_executor(tmp_path: Path):
    parameters = executor_parameters(
        {"partition": "gpu", "gpus_per_trial": 8, "nodes": 2, "time_min": 600, "account": "lab"}, 4
    )
    assert parameters == {
        "timeout_min": 600,
        "nodes": 2,
        "tasks_per_node": 8,
        "cpus_per_task": 4,
        "slurm_array_parallelism": 4,
        "gpus_per_node": 8,
        "slurm_partition": "gpu",
        "slurm_account": "lab",
    }
    with pytest.raises(ValueError, match="unknown slurm keys \\['gpu'\\]"):
        executor_parameters({"gpu": 1}, 1)
    commands = [
        (
            [sys.executable, "-c", f"import os; print('trial {i}', os.environ['H2OVL_TEST'])"],
            tmp_path / f"t{i}/fit.log",
            {"H2OVL_TEST": "env passed"},
        )
        for i in range(2)
    ]
    jobs = submit_array(tmp_path / "slurm", {"cluster": "local", "time_min": 5}, commands, parallel=2)
    assert [job.result() for job in jobs] == [0, 0]
    assert "trial 1 env passed" in (tmp_path / "t1/fit.log").read_text()


def test_parallel_local_trials_never_share_a_gpu_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Trials finish out of order; each must take a free set of GPUs, not one chosen by its position."""
    import threading
    import time

    import h2ovl.sweeps.runner as runner

    sweep = Sweep(
        load_spec(write_spec(tmp_path, variants={f"v{i}": {} for i in range(6)})), options(tmp_path, parallel=2)
    )
    monkeypatch.setattr(sweep, "_device_slots", lambda: ["0,1", "2,3"])
    monkeypatch.setattr(sweep, "prepare", lambda trial, parent: ([trial.name], tmp_path / "log", {}, {}))
    monkeypatch.setattr(sweep, "record", lambda trial, code, log: {"status": "finished", "value": None})
    in_use, clashes, lock = set(), [], threading.Lock()

    def fake_run(command, log, env, preload):
        assert not preload  # a GPU slot: the trial starts as a subprocess, CUDA sees only its devices
        slot = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            clashes.extend([slot] if slot in in_use else [])
            in_use.add(slot)
        time.sleep(0.15 if command[0].startswith(("v0", "v3")) else 0.02)  # uneven: trials end out of order
        with lock:
            in_use.discard(slot)
        return 0

    monkeypatch.setattr(runner, "run_command", fake_run)
    sweep.run_local(sweep.spec.expand(), None)
    assert clashes == []


def _trial_processes(tmp: Path) -> list[int]:
    """Live processes of trials under `tmp`, their data-loader workers included: those writing to a
    trial's `fit.log` (a trial forked from the preloaded server has the forkserver's command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stdout = os.readlink(entry / "fd" / "1")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if stdout.startswith(str(tmp)) and stdout.endswith("fit.log") and "zombie" not in state:
            found.append(int(entry.name))
    return found


def _wait_for(condition, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


@pytest.mark.slow
def test_a_sweep_owns_its_trials_through_kills_and_resumes_into_one_run_per_trial(tmp_path: Path):
    """SIGTERM to the sweep alone stops its running trial and closes its runs (exit 143); SIGKILL to the
    sweep leaves no trial behind (the trial stops itself); each resume ends with exactly one finished MLflow
    run per trial, the ones state.json names."""
    import signal
    import subprocess
    import sys

    overrides = {"trainer.max_steps": 30, "checkpoint": {"every_n_train_steps": 10}, "trainer.val_check_interval": 30}
    path = write_spec(
        tmp_path, variants={"fixed": {"model.preprocessor": FIXED}, "dynamic": {"model.preprocessor": DYNAMIC}}
    )
    spec = yaml.safe_load(path.read_text())
    spec["overrides"].update(overrides)
    path.write_text(yaml.safe_dump(spec))
    command = [
        sys.executable,
        "-m",
        "h2ovl.cli",
        "sweep",
        str(path),
        "--out",
        str(tmp_path / "sweeps"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    trial_log = tmp_path / "sweeps/t/trials/fixed__seed=0/fit.log"

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    sweep = start()
    _wait_for(lambda: bool(_trial_processes(tmp_path)) and trial_log.is_file() and "train" in trial_log.read_text())
    sweep.send_signal(signal.SIGTERM)  # the sweep's pid only
    _, err = sweep.communicate(timeout=180)
    assert sweep.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "stopped by SIGTERM" in err.strip().splitlines()[-1]
    assert _trial_processes(tmp_path) == []
    state = json.loads((tmp_path / "sweeps/t/state.json").read_text())
    assert state["trials"]["fixed/seed=0"]["status"] == "interrupted"
    assert client(tmp_path).get_run(state["parent_run_id"]).info.status == "KILLED"

    sweep = start()
    _wait_for(lambda: bool(_trial_processes(tmp_path)))
    sweep.kill()  # SIGKILL: the sweep cannot forward anything
    sweep.communicate(timeout=60)
    _wait_for(lambda: _trial_processes(tmp_path) == [], timeout=90)

    assert main(command[3:]) == 0
    state = json.loads((tmp_path / "sweeps/t/state.json").read_text())
    runs = client(tmp_path).search_runs(
        [client(tmp_path).get_experiment_by_name("t").experiment_id],
        f"tags.role = 'trial' and tags.`mlflow.parentRunId` = '{state['parent_run_id']}'",
    )
    assert sorted(r.data.tags["trial"] for r in runs) == ["dynamic/seed=0", "fixed/seed=0"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.info.run_id for r in runs} == {t["run_id"] for t in state["trials"].values()}
    assert all(t["status"] == "finished" for t in state["trials"].values())


def test_a_changed_spec_under_the_same_id_is_refused_or_rerun_with_force(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Trials are their resolved config: editing the spec (max_steps 2 -> 3) under the same sweep id
    must not show the old results as the new ones."""
    from h2ovl.sweeps.runner import Sweep

    path = write_spec(tmp_path, variants={"fixed": {"model.preprocessor": FIXED}})
    sweep = Sweep(load_spec(path), options(tmp_path))
    (trial,) = sweep.selected(sweep.spec.expand())
    sweep.state.update(trial.name, status="finished", settings=sweep.settings(trial))  # as a finished run leaves it
    (tmp_path / "sweeps/t/trials/fixed__seed=0").mkdir(parents=True)
    assert sweep.changed_trials([trial]) == {}

    spec = yaml.safe_load(path.read_text())
    spec["overrides"]["trainer.max_steps"] = 3
    path.write_text(yaml.safe_dump(spec))
    edited = Sweep(load_spec(path), options(tmp_path))
    assert edited.changed_trials([trial]) == {trial.name: ["trainer.max_steps: 2 -> 3"]}
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "sweeps")]) == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plan["trials"][0]["status"].startswith("changed: trainer.max_steps: 2 -> 3")
    with pytest.raises(SettingError, match="ran with other settings .* pass --force"):
        edited.refuse_or_reset_changed([trial])
    forced = Sweep(load_spec(path), options(tmp_path, force=True))
    forced.refuse_or_reset_changed([trial])
    assert forced.state.trial(trial.name) == {} and not (tmp_path / "sweeps/t/trials/fixed__seed=0").exists()


def test_every_exit_path_closes_the_parent_run(tmp_path: Path, capsys: pytest.CaptureFixture):
    """`--launcher slurm` where there is no SLURM fails in one line, and the sweep's MLflow run is closed
    FAILED, not left RUNNING."""
    path = write_spec(tmp_path, variants={"fixed": {"model.preprocessor": FIXED}})
    assert (
        main(
            [
                "sweep",
                str(path),
                "--launcher",
                "slurm",
                "--out",
                str(tmp_path / "sweeps"),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )
        == 2
    )
    assert "Traceback" not in capsys.readouterr().err
    state = json.loads((tmp_path / "sweeps/t/state.json").read_text())
    assert client(tmp_path).get_run(state["parent_run_id"]).info.status == "FAILED"


def test_tables_take_finished_runs_only_and_say_what_they_left_out(tmp_path: Path):
    from h2ovl.sweeps.results import experiment_table, to_markdown

    mlflow = client(tmp_path)
    experiment = mlflow.create_experiment("plain")
    for status, loss in (("FINISHED", 1.0), ("KILLED", 0.1), ("RUNNING", 0.2)):
        run = mlflow.create_run(experiment, tags={"variant": "a"})
        mlflow.log_metric(run.info.run_id, "val/loss", loss)
        if status != "RUNNING":
            mlflow.set_terminated(run.info.run_id, status)
    table = experiment_table(mlflow, "plain", ["val/loss"])
    (row,) = table.rows
    assert len(row.runs) == 1 and row.mean("val/loss") == 1.0  # the killed and running runs' values are not pooled in
    assert table.left_out == {"KILLED": 1, "RUNNING": 1}
    assert "Finished runs only: 2 left out (1 killed, 1 running)." in to_markdown(table)


def test_trial_sources_ask_and_tell(tmp_path: Path):
    """The runner consumes an ask/tell source; Optuna's asks `parallel` configurations at a time until
    `trials` are told, and asks the ones an interrupted sweep left running first."""
    from h2ovl.sweeps.search import FixedTrials, OptunaTrials

    spec = load_spec(
        write_spec(
            tmp_path,
            name="o",
            strategy="optuna",
            trials=3,
            seeds=[0, 1],
            search={"model.optim.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        )
    )
    done: set[str] = set()
    source = OptunaTrials(spec, tmp_path / "o", "o", parallel=2, finished=lambda t: t.name in done)
    first = source.ask()
    assert len(first) == 4 and {t.seed for t in first} == {0, 1}  # 2 configurations x 2 seeds
    done.update(t.name for t in first)
    source.tell(lambda t: 0.5)
    second = source.ask()
    assert len(second) == 2  # the third and last configuration
    resumed = OptunaTrials(spec, tmp_path / "o", "o", parallel=2, finished=lambda t: t.name in done)
    assert [t.name for t in resumed.ask()] == [t.name for t in second]  # left running: asked again first
    done.update(t.name for t in second)
    resumed.tell(lambda t: 0.25)
    assert resumed.ask() is None and "optuna.best_params" in resumed.tags()

    trials = load_spec(write_spec(tmp_path, variants={"a": {}, "b": {}})).expand()
    fixed = FixedTrials(trials, finished=lambda t: t.variant == "a")
    assert [t.variant for t in fixed.ask()] == ["b"] and fixed.ask() is None


# -- claims and the gallery ---------------------------------------------------------------------------
def _table(values: dict[str, list[float]], mode: str = "min") -> Table:
    rows = [Row(variant, values={"m": list(v)}) for variant, v in values.items()]
    return Table("t", ["m"], {"m": mode}, None, rows)


@pytest.mark.parametrize(
    ("values", "mode", "status"),
    [
        ({"a": [0.1, 0.2, 0.15], "b": [0.3, 0.25, 0.4]}, "min", "held"),
        ({"a": [0.1, 0.3], "b": [0.25, 0.4]}, "min", "within noise"),  # the ranges overlap: no claim
        ({"a": [0.5, 0.6], "b": [0.25, 0.4]}, "min", "reversed"),
        ({"a": [0.5, 0.6], "b": [0.25, 0.4]}, "max", "held"),
        ({"a": [0.5], "b": []}, "min", "not measured"),
    ],
)
def test_a_claim_holds_only_when_every_seed_agrees(values: dict, mode: str, status: str):
    verdict = judge(_table(values, mode), Claim("a", "b", "a beats b"), "m")
    assert verdict.status == status
    report = claims_text(_table(values, mode), [Claim("a", "b", "a beats b")], "m")
    assert f"- {status.upper()}: a beats b (a " in report


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ([{"better": "fixed", "worse": "nope", "text": "x"}], "claims\\[0\\].worse 'nope' is not one of the variants"),
        ([{"better": "fixed", "worse": "dynamic"}], "claims\\[0\\] must have exactly the keys"),
        ({"better": "fixed"}, "claims must be a list"),
    ],
)
def test_bad_claims_name_the_spec_and_the_claim(tmp_path: Path, claims, message: str):
    path = write_spec(
        tmp_path,
        variants={"fixed": {"model.preprocessor": FIXED}, "dynamic": {"model.preprocessor": DYNAMIC}},
        claims=claims,
    )
    with pytest.raises(SpecError, match=message):
        load_spec(path)


def test_ablation_prints_its_claims_verdicts_and_draws_every_variants_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    from h2ovl.evaluate import EvaluationRequest, evaluate
    from h2ovl.sweeps.gallery import collect

    claims = [{"better": "fixed", "worse": "dynamic", "text": "one squashed tile beats a row of tiles"}]
    path = write_spec(
        tmp_path,
        name="g",
        seeds=[0, 1],
        claims=claims,
        variants={"fixed": {"model.preprocessor": FIXED}, "dynamic": {"model.preprocessor": DYNAMIC}},
    )
    assert (
        main(
            [
                "ablate",
                str(path),
                "--out",
                str(tmp_path / "sweeps"),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    state = json.loads((tmp_path / "sweeps/g/state.json").read_text())["trials"]
    fixed, dynamic = ([state[f"{v}/seed={s}"]["value"] for s in (0, 1)] for v in ("fixed", "dynamic"))
    expected = "HELD" if max(fixed) < min(dynamic) else "REVERSED" if max(dynamic) < min(fixed) else "WITHIN NOISE"
    assert f"- {expected}: one squashed tile beats a row of tiles (fixed " in printed
    results = tmp_path / "sweeps/g/results"
    assert expected in (results / "claims.md").read_text()
    assert (results / "gallery.png").read_bytes()[:4] == b"\x89PNG"
    parent = json.loads(printed.strip().splitlines()[-1])["parent_run_id"]
    assert {"results/gallery.png", "results/claims.md"} <= {
        a.path for a in client(tmp_path).list_artifacts(parent, "results")
    }

    # The gallery's answers are the checkpoint's own, as `h2ovl evaluate` gives them, on the held-out split.
    checkpoint = tmp_path / "sweeps/g/trials/dynamic__seed=0/checkpoints/last.ckpt"
    data = next((tmp_path / "synthetic").glob("*/meta_val.json"))
    shown, preprocessors = collect({"dynamic": checkpoint}, str(data), samples=3)
    scores = evaluate(
        EvaluationRequest(
            data=str(data),
            ckpt=str(checkpoint),
            limit=3,
            max_new_tokens=32,
            out=str(tmp_path / "eval"),
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        )
    )
    predicted = [json.loads(line)["prediction"] for line in Path(scores["predictions"]).read_text().splitlines()]
    assert [s.answers["dynamic"] for s in shown] == predicted
    assert list(preprocessors) == ["dynamic 64px <=3 tiles +thumbnail"]


def test_init_stages_in_a_list_run_as_a_curriculum_each_from_the_one_before(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    stages = [
        {"overrides": {"trainer.max_steps": 2}},
        {"overrides": {"trainer.max_steps": 4, "model.optim.lr": 1.0e-3}},
    ]
    path = write_spec(tmp_path, name="c", init_stage=stages, variants={"fixed": {"model.preprocessor": FIXED}})
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "sweeps")]) == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [t["trial"] for t in plan["trials"]] == ["init-stage-1", "init-stage-2", "fixed/seed=0"]

    summary = Sweep(load_spec(path), options(tmp_path)).run()
    assert summary["finished"] == 3 and not summary["failed"]
    folder = tmp_path / "sweeps/c/trials"
    config = {
        name: yaml.safe_load((folder / name / "config.yaml").read_text())
        for name in ("init-stage-1", "init-stage-2", "fixed__seed=0")
    }
    assert config["init-stage-1"]["model"].get("init", {}).get("checkpoint") is None
    assert config["init-stage-2"]["model"]["init"]["checkpoint"] == str(folder / "init-stage-1/checkpoints/last.ckpt")
    assert config["fixed__seed=0"]["model"]["init"]["checkpoint"] == str(folder / "init-stage-2/checkpoints/last.ckpt")
    assert config["init-stage-2"]["trainer"]["max_steps"] == 4

    # Editing the first stage reruns everything after it (with --force); the second stage alone, only itself on.
    stages[0]["overrides"]["trainer.max_steps"] = 3
    path = write_spec(tmp_path, name="c", init_stage=stages, variants={"fixed": {"model.preprocessor": FIXED}})
    with pytest.raises(SettingError, match="init-stage-1"):
        Sweep(load_spec(path), options(tmp_path)).run()
    capsys.readouterr()
    Sweep(load_spec(path), options(tmp_path, force=True)).run()
    printed = capsys.readouterr().out
    assert "start init-stage-1" in printed and "start init-stage-2" in printed and "start fixed/seed=0" in printed


def test_a_preloaded_trial_runs_h2ovl_in_a_process_of_its_own_with_its_log_and_exit_code(tmp_path: Path):
    from h2ovl.sweeps.preloaded import preloadable
    from h2ovl.sweeps.trials import run_command

    command = [
        sys.executable,
        "-m",
        "h2ovl.cli",
        "table",
        "--sweep",
        "no-such-sweep",
        "--out",
        str(tmp_path / "t"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    log = tmp_path / "fit.log"
    # (Its environment: every sweep test, whose trials find their MLflow store through it.)
    assert run_command(command, log, preload=True) == 2  # a user's error, as from a shell
    written = log.read_text()
    assert "(forked, imports preloaded)" in written and "no-such-sweep" in written and "Traceback" not in written

    cpu = {"trainer": {"accelerator": "cpu", "devices": 1}}
    assert preloadable(command, cpu, None)
    assert not preloadable(command, cpu, "0")  # a GPU slot: CUDA must see its devices before anything starts
    assert not preloadable(command, {"trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}}, None)
    assert not preloadable(["h2ovl", "fit"], cpu, None)


@pytest.mark.slow  # a trial signalled, killed and run again
def test_slurms_pre_timeout_signal_reaches_the_trial_which_requeues_and_resumes(tmp_path: Path):
    """A SLURM array task runs its trial through `run_command` in its main thread; the trial is in a process
    group of its own. SLURM's warning (submitit asks for SIGUSR2) reaches this task: the trial gets SIGUSR1,
    Lightning's auto-requeue saves `hpc_ckpt_1.ckpt` and calls `scontrol requeue <array job>_<task>`, and
    SLURM kills the job (here the fake scontrol does). The same command run again (the requeued task)
    resumes from that checkpoint into the same MLflow run and finishes."""
    import signal
    import subprocess
    import time

    import torch

    from training_runs import mlflow_runs, tiny_run_config, write_config

    marker, requeued = tmp_path / "step3", tmp_path / "scontrol.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {requeued}\nkill -9 $PPID\n')  # SLURM ends the job it requeues
    scontrol.chmod(0o755)
    config = tiny_run_config(tmp_path, "trial", 8)
    config["trainer"]["callbacks"] = [
        {"class_path": "support.faults.SlowSteps", "init_args": {"seconds": 0.5, "marker": str(marker), "at": 3}}
    ]
    command = [sys.executable, "-m", "h2ovl.cli", "fit", "--config", str(write_config(tmp_path / "trial.yaml", config))]
    slurm = {
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": "1",
        "SLURM_NODELIST": "localhost",
        "SLURM_JOB_NAME": "trial",
        "SLURM_JOB_ID": "4243",
        "SLURM_ARRAY_JOB_ID": "4242",
        "SLURM_ARRAY_TASK_ID": "3",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    task = (
        "import json, sys; from pathlib import Path; from h2ovl.sweeps.trials import run_command; "
        f"sys.exit(run_command(json.loads(sys.argv[1]), Path({str(tmp_path / 'fit.log')!r}), json.loads(sys.argv[2])))"
    )
    array_task = subprocess.Popen([sys.executable, "-c", task, json.dumps(command), json.dumps(slurm)], cwd=tmp_path)
    deadline = time.monotonic() + 180
    while not marker.exists() and time.monotonic() < deadline and array_task.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), (tmp_path / "fit.log").read_text()[-3000:]
    array_task.send_signal(signal.SIGUSR2)
    assert array_task.wait(timeout=120) == 256 - signal.SIGKILL  # run_command returned -9: the trial was killed
    assert requeued.read_text().split() == ["requeue", "4242_3"]
    checkpoint = torch.load(tmp_path / "runs/trial/hpc_ckpt_1.ckpt", map_location="cpu", weights_only=False)
    assert 3 <= checkpoint["global_step"] < 8

    requeued.unlink()
    rerun = subprocess.run(
        [sys.executable, "-c", task, json.dumps(command), json.dumps(slurm)], cwd=tmp_path, timeout=240
    )
    assert rerun.returncode == 0, (tmp_path / "fit.log").read_text()[-3000:]
    assert f"resuming from {tmp_path / 'runs/trial/hpc_ckpt_1.ckpt'}" in (tmp_path / "fit.log").read_text()
    (run,) = mlflow_runs(tmp_path, "trial")
    assert (
        run.info.status == "FINISHED"
        and torch.load(tmp_path / "runs/trial/checkpoints/last.ckpt", weights_only=False)["global_step"] == 8
    )
