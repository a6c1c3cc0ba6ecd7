"""Append a finished `make demo` (or `h2ovl demo --out DIR`) to the demo's recorded runs
(`ablations/cpu-demo-runs.csv`): every fine-tune's CER, read from the run's MLflow store, with the recipe's
digest, the machine, the CPU kernel setting and the shared stages' seed. The demo then prints where a new
run falls against these, and the README states their range (a test keeps the two equal).

    .venv/bin/python benchmarks/record_demo_run.py --run N --store outputs/demo/mlflow.db \\
        --machine "2-core AMD EPYC (AVX-512)" --kernel default --stage-seed 0
"""

from __future__ import annotations

import argparse
import csv

from h2ovl.demo.ablation import DEMO_SPEC
from h2ovl.demo.recorded import CER_DECIMALS, COLUMNS, RUNS_FILE, load_runs, recipe_digest
from h2ovl.sweeps import load_spec, table_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a name for the run, unique in the file")
    parser.add_argument("--store", required=True, help="the run's MLflow store: a sqlite file or a tracking URI")
    parser.add_argument("--machine", required=True)
    parser.add_argument("--kernel", required=True, help="ATEN_CPU_CAPABILITY, or 'default'")
    parser.add_argument("--stage-seed", type=int, required=True)
    parser.add_argument("--sweep-id", default="cpu-demo")
    args = parser.parse_args()

    recorded = load_runs() if RUNS_FILE.is_file() else []
    if any(run.run == args.run for run in recorded):
        raise SystemExit(f"{RUNS_FILE.name} already holds a run named {args.run!r}")
    spec = load_spec(DEMO_SPEC)
    uri = args.store if "://" in args.store else f"sqlite:///{args.store}"
    _, table = table_for(uri, sweep_id=args.sweep_id)
    rows = []
    for row in table.rows:
        for run in row.runs:
            value = run.data.metrics.get(spec.metric)
            if value is None:
                continue
            rows.append(
                [
                    args.run,
                    recipe_digest(spec),
                    args.machine,
                    args.kernel,
                    args.stage_seed,
                    row.variant,
                    run.data.tags.get("seed"),
                    f"{value:.{CER_DECIMALS}f}",
                ]
            )
    new = not RUNS_FILE.is_file()
    with RUNS_FILE.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if new:
            writer.writerow(COLUMNS)
        writer.writerows(rows)
    print(f"{RUNS_FILE}: {len(rows)} fine-tunes of run {args.run!r} appended")


if __name__ == "__main__":
    main()
