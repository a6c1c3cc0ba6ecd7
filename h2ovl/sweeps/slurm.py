"""`--launcher slurm`: the trials as one SLURM job array through submitit. Each array task runs its trial's
`h2ovl fit` on `nodes` x `gpus_per_trial` GPUs (one task per GPU; Lightning reads the SLURM environment).

Spec keys (`slurm:`): partition, gpus_per_trial, nodes, time_min, cpus_per_task, mem_gb, account, qos,
constraint, setup (shell lines run before each trial), and `cluster`: `slurm` (default), or submitit's `local`
/ `debug` executors to try the same submission on one machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from h2ovl.errors import SettingError, SpecError
from h2ovl.sweeps.trials import run_command

_PARAMETERS = {
    "partition": "slurm_partition",
    "account": "slurm_account",
    "qos": "slurm_qos",
    "constraint": "slurm_constraint",
    "setup": "slurm_setup",
}


def executor_parameters(slurm: dict[str, Any], parallel: int) -> dict[str, Any]:
    """submitit parameters from the spec's `slurm` block."""
    gpus = int(slurm.get("gpus_per_trial", 0))
    parameters: dict[str, Any] = {
        "timeout_min": int(slurm.get("time_min", 60)),
        "nodes": int(slurm.get("nodes", 1)),
        "tasks_per_node": max(gpus, 1),
        "cpus_per_task": int(slurm.get("cpus_per_task", 4)),
        "slurm_array_parallelism": parallel,
    }
    if gpus:
        parameters["gpus_per_node"] = gpus
    if "mem_gb" in slurm:
        parameters["mem_gb"] = int(slurm["mem_gb"])
    for key, name in _PARAMETERS.items():
        if key in slurm:
            parameters[name] = slurm[key]
    unknown = set(slurm) - {*_PARAMETERS, "gpus_per_trial", "time_min", "nodes", "cpus_per_task", "mem_gb", "cluster"}
    if unknown:
        raise SpecError(f"unknown slurm keys {sorted(unknown)}")
    return parameters


def submit_array(
    folder: Path, slurm: dict[str, Any], commands: list[tuple[list[str], Path, dict[str, str]]], parallel: int
) -> list[Any]:
    """Submit every (command, log, env) as one job array; returns the submitit jobs in order."""
    import submitit

    cluster = slurm.get("cluster", "slurm")
    if cluster == "slurm" and shutil.which("srun") is None:  # submitit's own test, with a traceback
        raise SettingError(
            "--launcher slurm: no SLURM on this machine (no srun on PATH); submit from a cluster's login node, "
            "or set slurm.cluster: local in the spec to try the submission here"
        )
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
    parameters = executor_parameters(slurm, parallel)
    if cluster != "slurm":  # local/debug executors take only the generic parameters
        parameters = {
            k: v
            for k, v in parameters.items()
            if not k.startswith("slurm_") and k not in ("nodes", "tasks_per_node", "gpus_per_node")
        }
    executor.update_parameters(**parameters)
    for _, log, _ in commands:
        log.parent.mkdir(parents=True, exist_ok=True)
    with executor.batch():
        jobs = [executor.submit(run_command, command, log, env) for command, log, env in commands]
    return jobs
