"""The demo's recorded runs (`ablations/cpu-demo-runs.csv`) are of the recipe the spec holds now, the README
states exactly the range they span, and docs/results.md lists each of them; a demo run is placed against
them under its table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from h2ovl.demo.ablation import DEMO_SPEC, demo_spec
from h2ovl.demo.recorded import RUNS_FILE, load_runs, placement, recipe_digest, robust_claims, variant_ranges
from h2ovl.errors import UserError
from h2ovl.sweeps import load_spec

from training_runs import ROOT


def test_every_recorded_run_is_of_the_recipe_the_spec_holds():
    """Editing the demo's recipe (spec, base experiment, preset) without recording runs of the new one fails here."""
    digest = recipe_digest(load_spec(DEMO_SPEC))
    assert (
        recipe_digest(demo_spec(False, Path("/elsewhere"), stage_seed=2)) == digest
    )  # --out, --stage-seed: same recipe
    runs = load_runs()
    assert runs and {run.recipe for run in runs} == {digest}
    variants = set(load_spec(DEMO_SPEC).variants)
    assert all(set(run.cer) == variants and all(len(c) == 3 for c in run.cer.values()) for run in runs)


def test_the_readme_states_the_range_of_the_recorded_runs():
    runs = load_runs()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stated = {
        m.group(1): (float(m.group(2)), float(m.group(3)))
        for m in re.finditer(r"^\| (\S+) \| ([\d.]+) to ([\d.]+) \|", readme, re.M)
    }
    ranges = variant_ranges(runs)
    assert stated == {v: (round(low, 3), round(high, 3)) for v, (low, high) in ranges.items()}
    assert f"{len(runs)} recorded runs" in readme
    # The conclusions the README leads with are those that held in every recorded run, and only those.
    stated_claims = re.findall(rf"^- held in all {len(runs)} recorded runs: (.*)$", readme, re.M)
    assert stated_claims == [claim.text for claim in robust_claims(runs, load_spec(DEMO_SPEC))]
    results = (ROOT / "docs/results.md").read_text(encoding="utf-8")
    assert all(f"| {run.run} |" in results for run in runs)


def test_a_run_is_placed_against_the_recorded_range():
    spec = load_spec(DEMO_SPEC)
    low, high = variant_ranges(load_runs())["dynamic+ps"]
    text = placement({"dynamic+ps": (low + high) / 2, "fixed+ps": 5.0}, spec)
    assert "dynamic+ps" in text and "inside the recorded range" in text and "OUTSIDE the recorded range" in text
    # A recorded run's own mean, read back unrounded, sits on the range's end to within the file's rounding.
    at_the_end = placement({"dynamic+ps": low - 0.4e-4}, spec)
    assert "inside the recorded range" in at_the_end and "OUTSIDE" not in at_the_end
    spec.overrides = {**spec.overrides, "model.optim.lr": 1.0}  # another recipe: its runs are not these
    assert "No recorded runs of this recipe" in placement({"dynamic+ps": 0.1}, spec)


def test_a_malformed_record_names_its_line(tmp_path):
    bad = tmp_path / "runs.csv"
    bad.write_text(RUNS_FILE.read_text(encoding="utf-8").splitlines()[0] + "\nA,x,m,default,zero,dynamic+ps,0,0.1\n")
    with pytest.raises(UserError, match=r"runs.csv:2: "):
        load_runs(bad)


def test_the_demo_command_prints_its_run_against_the_recorded_ones(tmp_path, monkeypatch):
    """`h2ovl demo` (any --out, any --stage-seed) hands the sweep an epilogue that places the finished table."""
    import h2ovl.cli as cli

    captured = {}
    monkeypatch.setattr(
        cli, "_run_ablation", lambda spec, options, epilogue=None: captured.update(epilogue=epilogue) or 0
    )
    assert cli.main(["demo", "--out", str(tmp_path), "--stage-seed", "1"]) == 0
    runs = load_runs()
    text = captured["epilogue"](runs[0].table("val/cer/cer"))
    here = runs[0].mean("dynamic+ps")
    assert (
        f"Recorded runs of this recipe ({len(runs)}:" in text
        and f"this run {here:.3f}, inside the recorded range" in text
    )
