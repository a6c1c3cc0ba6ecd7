"""Every shell command of the README and docs/ is true: it runs here as written, or it is parsed here, or it
sits in a block marked as an example.

- `RUN`: run in order by one slow test, in a scratch folder that sees the repository's configs, specs and
  experiments as a clone does (a fit, its resume, validate/test/predict, scoring, evaluation, export, the
  table, a preview, sweep dry-runs). A command whose documented form trains for minutes is run with the
  overrides in `RUN[command]` appended after the documented arguments (fewer steps and samples, or
  `--dry-run` for a sweep): the documented arguments are all kept.
- `PARSED`: commands whose prerequisite no test machine has (a finished ablation's runs in MLflow); the
  `h2ovl` parser reads them and every repository file they name exists.
- `make demo` and `make test`: Makefile targets, and `.ci/run` runs the second.
- A block preceded by `EXAMPLE_MARK` holds placeholders (a reader's files, a hub id, a GPU cluster, a
  server): its `h2ovl` commands are parsed where their syntax is a command's (no `[optional]` or `{a,b}`
  synopsis), not run.

A command added to the docs fails `test_every_documented_command_is_run_parsed_or_marked` until it is one
of these; an entry left here after its command left the docs fails it too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import noise_image
from support.benchmark_files import ocrbench_result
from training_runs import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE_MARK = "<!-- example: not run by the tests (placeholders, a GPU cluster, a server or a download) -->"
REPOSITORY_FOLDERS = ("experiments", "configs", "sweeps", "ablations")

_FIT_SHORT = (
    "--trainer.max_steps 2 --trainer.val_check_interval 2 --checkpoint.every_n_train_steps 2 "
    "--data.val_limit 4 --model.val_generation.samples 4 --model.val_generation.max_new_tokens 4"
)
_CHECKPOINT_SHORT = "--data.val_limit 4 --data.test_limit 4 --model.val_generation.samples 4 --model.max_new_tokens 4"
#: command as documented -> what is appended to shorten it; in the order a reader runs them
RUN: dict[str, str] = {
    "h2ovl fit --config experiments/cpu/tiny.yaml": _FIT_SHORT,
    "h2ovl fit --config experiments/cpu/tiny.yaml --ckpt_path last": _FIT_SHORT.replace("max_steps 2", "max_steps 3"),
    "h2ovl validate --config experiments/cpu/tiny.yaml --ckpt_path last": _CHECKPOINT_SHORT,
    "h2ovl test --config experiments/cpu/tiny.yaml --ckpt_path last": _CHECKPOINT_SHORT,
    "h2ovl predict --config experiments/cpu/tiny.yaml --ckpt_path last": _CHECKPOINT_SHORT,
    "h2ovl score --task auto outputs/runs/cpu-tiny/predictions.jsonl": "",
    "h2ovl evaluate --ckpt outputs/runs/cpu-tiny/checkpoints/last.ckpt "
    "--data outputs/synthetic/n600-seed0-all-test0.1-side512-v4/meta_test.json": "--limit 4 --max-new-tokens 4",
    "h2ovl export --ckpt outputs/runs/cpu-tiny/checkpoints/last.ckpt --out outputs/export/cpu-tiny": "",
    "h2ovl table --experiment cpu-tiny --metric val/loss val/cer/cer": "",
    "h2ovl score --task ocrbench ocrbench_predictions.json": "",
    "h2ovl preview page.png --preprocessor MSAC --max-tiles 6": "",
    "h2ovl sweep sweeps/lr-grid.yaml --dry-run": "",
    "h2ovl sweep sweeps/lr-grid.yaml --parallel 2": "--dry-run",
    'h2ovl sweep sweeps/lr-grid.yaml --only "lr=0.001/warmup_ratio=0"': "--dry-run",
    "h2ovl sweep sweeps/paper-2b-slurm.yaml --launcher slurm --parallel 3": "--dry-run",
    "h2ovl ablate ablations/preprocessor-pixel-shuffle.yaml": "--dry-run",
}
PARSED = {"h2ovl table --sweep preprocessor-pixel-shuffle"}
MAKE = {"make demo", "make test"}


def _commands(block: str) -> list[str]:
    """A shell block's commands: continuation lines joined, trailing comments and `.venv/bin/` dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            commands.append(" ".join(line.removeprefix(".venv/bin/").split()))
    return commands


def documented_commands() -> list[tuple[str, str, bool]]:
    """(page, command, marked as an example) for every shell block of the README and docs/."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S):
            example = text[: match.start()].rstrip().endswith(EXAMPLE_MARK)
            found += [(page.name, command, example) for command in _commands(match.group(1))]
    return found


def test_every_documented_command_is_run_parsed_or_marked():
    commands = documented_commands()
    unmarked = {command for _, command, example in commands if not example}
    known = {*RUN, *PARSED, *MAKE}
    unaccounted = sorted(
        f"{page}: {command}" for page, command, example in commands if not (example or command in known)
    )
    assert unaccounted == [], "run it in RUN, parse it in PARSED, or mark its block with EXAMPLE_MARK"
    assert known - unmarked == set(), "entries whose command is no longer documented"


def test_the_make_commands_are_targets_and_ci_runs_the_tests():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for command in MAKE:
        assert re.search(rf"^{command.split()[1]}:", makefile, re.M), command
    assert "make test" in (ROOT / ".ci/run").read_text(encoding="utf-8")


def _parse(command: str) -> None:
    """What `h2ovl` makes of a command's arguments, nothing run: the plain commands through their argparse
    parser, the Lightning ones through the fit parser on their composed config."""
    from h2ovl.cli import build_parser
    from h2ovl.constants import LIGHTNING_SUBCOMMANDS
    from h2ovl.training.compose import expand_config_args
    from h2ovl.training.lightning_cli import ParseOnlyCLI

    argv = shlex.split(command)
    if argv[0] == "torchrun":
        argv = argv[argv.index("h2ovl.cli") :]
    assert argv[0] in ("h2ovl", "h2ovl.cli"), command
    for arg in argv[1:]:
        if arg.split("/")[0] in REPOSITORY_FOLDERS:
            assert (ROOT / arg).exists(), f"{command}: {arg} is not in the repository"
    if argv[1] not in LIGHTNING_SUBCOMMANDS:
        build_parser().parse_args(argv[1:])
        return
    rest = argv[2:]
    if "--ckpt_path" in rest:  # a subcommand's argument, which the parse-only parser does not take
        at = rest.index("--ckpt_path")
        rest = rest[:at] + rest[at + 2 :]
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(io.StringIO()):
        ParseOnlyCLI(args=expand_config_args(rest), run=False)


@pytest.mark.parametrize(
    "command",
    sorted(
        {
            c
            for _, c, example in documented_commands()
            if c.startswith(("h2ovl", "torchrun")) and not re.search(r"[\[{]", c)
        }
    ),
)
def test_documented_command_parses(command: str):
    _parse(command)


@pytest.mark.slow  # a fit, its resume and everything done with the checkpoint, as the docs run them
def test_the_documented_commands_run_in_order(tmp_path: Path):
    for folder in REPOSITORY_FOLDERS:
        (tmp_path / folder).symlink_to(ROOT / folder)
    noise_image(200, 120).save(tmp_path / "page.png")
    result = ocrbench_result("coffee", ["Coffee"], "Regular Text Recognition")
    (tmp_path / "ocrbench_predictions.json").write_text(json.dumps([result]))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for command, shortening in RUN.items():
        argv = shlex.split(command) + shlex.split(shortening)
        result = subprocess.run(
            [sys.executable, "-m", "h2ovl.cli", *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{command} {shortening}\n{result.stderr[-3000:]}"
        if command.startswith("h2ovl score"):
            assert json.loads(result.stdout.strip().splitlines()[-1]), command  # the last line: the scores
    assert (tmp_path / "outputs/export/cpu-tiny/config.json").is_file()
