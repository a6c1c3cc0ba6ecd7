"""The sweep writes its trials' synthetic data ahead of them: each dataset once, in run order, each trial
started only once its data is whole; real data and failed writes are left to the trial."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_sweeps import options, write_spec

import h2ovl.sweeps.runner as runner
from h2ovl.data.datamodule import SyntheticData
from h2ovl.sweeps.data_ahead import DataAhead, synthetic_data
from h2ovl.sweeps.runner import Sweep
from h2ovl.sweeps.spec import load_spec


def synthetic(tmp: Path, seed: int, tasks: list[str] | None = None) -> dict:
    return {
        "data": {
            "synthetic": {
                "out": str(tmp / "synthetic"),
                "n": 6,
                "seed": seed,
                "tasks": tasks or ["digits_square"],
                "test_fraction": 0.2,
                "max_side": 160,
            }
        }
    }


def test_each_dataset_is_written_once_in_run_order_and_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    written, release = [], threading.Event()
    ensure = SyntheticData.ensure

    def slow_ensure(self: SyntheticData) -> dict[str, Path]:
        release.wait(10)  # held until the test has seen wait_for block
        written.append(self.seed)
        return ensure(self)

    monkeypatch.setattr(SyntheticData, "ensure", slow_ensure)
    first, second, real = synthetic(tmp_path, 1), synthetic(tmp_path, 2), {"data": {"train": "mine.jsonl"}}
    ahead = DataAhead([first, second, first, real])
    ahead.wait_for(real)  # real data: nothing to wait for, even while the thread is held
    waiter = threading.Thread(target=ahead.wait_for, args=(second,))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and written == []  # blocked until its data is written
    release.set()
    waiter.join(10)
    assert not waiter.is_alive()
    assert written == [1, 2]  # in order, the repeated dataset once
    for config in (first, second):
        assert (synthetic_data(config).folder / "meta.json").is_file()
    assert synthetic_data(real) is None


def test_a_dataset_that_fails_to_write_is_left_to_its_trial(tmp_path: Path):
    broken = synthetic(tmp_path, 0, tasks=["no_such_task"])
    ahead = DataAhead([broken])
    ahead.wait_for(broken)  # returns: the trial meets the error itself and reports it in its log
    assert not synthetic_data(broken).folder.exists()
    with pytest.raises(Exception, match="no_such_task"):
        synthetic_data(broken).ensure()


def test_a_local_sweep_starts_each_trial_with_its_data_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stage = {"overrides": {"data.synthetic": synthetic(tmp_path, 7)["data"]["synthetic"]}}
    spec = load_spec(write_spec(tmp_path, init_stage=[stage], variants={"a": {}, "b": {}}))
    sweep = Sweep(spec, options(tmp_path))
    started_server, seen = [], []
    monkeypatch.setattr(runner, "start_forkserver", lambda: started_server.append(True))
    monkeypatch.setattr(sweep, "record", lambda trial, code, log: {"status": "finished", "value": None})
    monkeypatch.setattr(sweep, "stage_checkpoint", lambda trial: "none.ckpt")

    def fake_run(command, log, env, preload):
        import yaml

        config = yaml.safe_load(Path(command[command.index("--config") + 1]).read_text())
        seen.append((synthetic_data(config).folder / "meta.json").is_file())
        return 0

    monkeypatch.setattr(runner, "run_command", fake_run)
    sweep._run_trials(parent=None)
    assert seen == [True, True, True]  # the stage, then both variants (which share one dataset)
    assert started_server == [True]  # CPU trials: the forkserver's imports started with the sweep
    assert len(list((tmp_path / "synthetic").iterdir())) == 2
