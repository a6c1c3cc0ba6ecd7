"""The `h2ovl` command: one entry point whose subcommands each hand off to the module that does the work.

h2ovl preview IMAGE [--preprocessor fixed|dynamic|msac|CLASS_PATH] [--max-tiles N] [--tile-size T]
              [--no-thumbnail] [--fast-path] [--out PNG] [--json]
h2ovl demo [--out DIR] [--long] [--preprocessing]
h2ovl synth --out DIR --n N [--seed S] [--tasks T ...] [--test-fraction F] [--max-side PX]
h2ovl data optimize META OUT [--num-workers N] [--chunk-bytes 64MB] [--url-prefix s3://...]
h2ovl data inspect META [--preset tiny|h2ovl-0.8b|h2ovl-2b] [--tokenizer DIR|HUB_ID] [--limit N]
h2ovl fit|validate|test|predict --config CONFIG.yaml [--key.subkey VALUE ...]   (LightningCLI)
h2ovl score --task {auto,ocrbench,anls,vqa,kie,cer,relaxed} PREDICTIONS.jsonl|OCRBENCH.json
h2ovl evaluate (--ckpt CKPT | --released DIR|HUB_ID) --data META|JSONL|BENCHMARK [--protocol P] [--limit N]
h2ovl export (--ckpt CKPT | --released DIR) --out DIR [--format transformers|released]
h2ovl consolidate SHARDED_CHECKPOINT_DIR --out FILE.ckpt
h2ovl sweep SPEC [--dry-run] [--launcher local|slurm] [--parallel N] [--only NAME ...] [--sweep-id ID]
h2ovl ablate SPEC [same flags as sweep]            (sweep, then table and plots)
h2ovl table (--sweep ID | --experiment NAME --metric M ...) [--baseline VARIANT] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from h2ovl.constants import LIGHTNING_SUBCOMMANDS
from h2ovl.errors import RunFailed, SettingError, Stopped, UserError
from h2ovl.preprocessing import ImagePreprocessor, tokens_per_tile
from h2ovl.synth.tasks import TASKS

if TYPE_CHECKING:
    from h2ovl.sweeps import SweepOptions
    from h2ovl.sweeps.results import Table
    from h2ovl.sweeps.spec import SweepSpec


def preview_preprocessor(args: argparse.Namespace) -> ImagePreprocessor:
    """`--preprocessor` (a class name or class path, as in configs) with the flags as its init_args (those
    the class takes)."""
    import inspect

    from h2ovl.preprocessing import instantiate_preprocessor

    flags = {
        "tile_size": args.tile_size,
        "max_tiles": args.max_tiles,
        "use_thumbnail": not args.no_thumbnail,
        "fast_path": args.fast_path,
    }
    cls = type(instantiate_preprocessor(args.preprocessor))
    accepted = inspect.signature(cls.__init__).parameters
    return instantiate_preprocessor(
        {
            "class_path": f"{cls.__module__}.{cls.__name__}",
            "init_args": {k: v for k, v in flags.items() if k in accepted},
        }
    )


def _preview(args: argparse.Namespace) -> int:
    from h2ovl.preprocessing.preview import preview_summary, render_preview

    preprocessor = preview_preprocessor(args)
    picture, tiled = render_preview(args.image, preprocessor)
    summary = preview_summary(preprocessor, tiled, tokens_per_tile(args.tile_size, args.patch_size, 0.5))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        picture.save(args.out)
        summary["preview"] = str(args.out)
    if args.json:
        print(json.dumps(summary))
    else:
        grids = ", ".join(f"{k} {v[0]}x{v[1]}" for k, v in summary.items() if k.endswith("grid"))
        print(
            f"{args.image}: {summary['image_size'][0]}x{summary['image_size'][1]} -> {grids}; "
            f"{summary['n_tiles']} tiles, {summary['n_tokens']} visual tokens (pixel shuffle on)"
        )
        if args.out:
            print(f"preview written to {args.out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.preprocessing:
        from h2ovl.demo.preprocessing import run_preprocessing_demo

        run_preprocessing_demo(args.out)
        return 0
    from h2ovl.demo.ablation import demo_spec
    from h2ovl.demo.recorded import placement

    spec = demo_spec(args.long, args.out, args.stage_seed)

    def against_recorded_runs(table: Table) -> str:
        means = {row.variant: row.mean(spec.metric) for row in table.rows if row.mean(spec.metric) is not None}
        return placement(means, spec) if not args.long else ""

    return _run_ablation(spec, _sweep_options(args, out=str(args.out / "sweeps")), epilogue=against_recorded_runs)


def _sweep_options(args: argparse.Namespace, out: str | None = None) -> SweepOptions:
    from h2ovl.sweeps import SweepOptions

    return SweepOptions(
        sweep_id=getattr(args, "sweep_id", None),
        launcher=getattr(args, "launcher", "local"),
        parallel=getattr(args, "parallel", 1),
        only=getattr(args, "only", None),
        dry_run=getattr(args, "dry_run", False),
        out=out or args.out,
        tracking_uri=getattr(args, "tracking_uri", None),
        force=getattr(args, "force", False),
    )


def _sweep(args: argparse.Namespace) -> int:
    from h2ovl.sweeps import Sweep, load_spec

    summary = Sweep(load_spec(args.spec), _sweep_options(args)).run()
    print(json.dumps(summary))
    return 0 if args.dry_run or not summary["failed"] else 1


def _run_ablation(spec: SweepSpec, options: SweepOptions, epilogue: Callable[[Table], str] | None = None) -> int:
    """Runs the sweep, then prints its table and verdicts (and `epilogue`'s text about the table)."""
    from h2ovl.sweeps import Sweep, table_for, write_results

    sweep = Sweep(spec, options)
    summary = sweep.run()
    if options.dry_run:
        print(json.dumps(summary))
        return 0
    client, table = table_for(options.tracking_uri, sweep_id=sweep.sweep_id)
    files = write_results(client, table, sweep.folder / "results", sweep)
    print("\n" + files.pop("table"))
    if epilogue is not None and (text := epilogue(table)):
        print("\n" + text)
    print(json.dumps({**summary, **files}))
    return 0 if not summary["failed"] else 1


def _ablate(args: argparse.Namespace) -> int:
    from h2ovl.sweeps import load_spec

    return _run_ablation(load_spec(args.spec), _sweep_options(args))


def _table(args: argparse.Namespace) -> int:
    from h2ovl.sweeps import table_for, write_results

    client, table = table_for(args.tracking_uri, args.sweep, args.experiment, args.metric, args.baseline)
    out = args.out or Path("outputs/sweeps") / (args.sweep or args.experiment) / "results"
    files = write_results(client, table, out)
    print(files.pop("table"))
    print(json.dumps(files))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from h2ovl.synth import write_synthetic

    written = write_synthetic(args.out, args.n, args.seed, args.tasks, args.test_fraction, args.max_side)
    print(json.dumps({split: str(path) for split, path in written.items()}))
    return 0


def _data_optimize(args: argparse.Namespace) -> int:
    from h2ovl.data.optimize import optimize_mixture

    report = optimize_mixture(args.meta, args.out, args.num_workers, args.chunk_bytes, args.url_prefix)
    print(json.dumps(report))
    return 0


def _data_inspect(args: argparse.Namespace) -> int:
    from h2ovl.data.inspect import inspect_mixture

    print(json.dumps(inspect_mixture(str(args.meta), args.preset, args.limit, args.max_length, args.tokenizer)))
    return 0


def _score(args: argparse.Namespace) -> int:
    from h2ovl.scoring import read_predictions, score_samples

    scores = score_samples(read_predictions(args.predictions), args.task, _scorer_options(args))
    if args.out:
        args.out.write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores))
    return 0


def _consolidate(args: argparse.Namespace) -> int:
    from h2ovl.training.checkpoint_io import AtomicCheckpointIO
    from h2ovl.training.sharded import is_sharded_checkpoint
    from h2ovl.training.weights import load_checkpoint

    if not is_sharded_checkpoint(args.checkpoint):
        raise UserError(f"{args.checkpoint}: not a sharded checkpoint folder (no .metadata index in it)")
    checkpoint = load_checkpoint(args.checkpoint)
    AtomicCheckpointIO().save_checkpoint(checkpoint, args.out)
    tensors = sum(1 for _ in checkpoint["state_dict"])
    print(
        f"{args.out}: step {checkpoint.get('global_step', '?')}, {tensors} weight tensors"
        + (", optimizer state" if checkpoint.get("optimizer_states") else "")
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from h2ovl.evaluate import load_module
    from h2ovl.model.hf_internvl import export_hf_internvl

    module, _ = load_module(args.ckpt, args.released, max_new_tokens=64)
    if args.format == "released":
        module.model.save_released(args.out, module.tokenizer)
    else:
        export_hf_internvl(module.model, args.out, module.tokenizer)
    print(json.dumps({"out": str(args.out), "format": args.format}))
    return 0


def _scorer_options(args: argparse.Namespace) -> dict[str, dict]:
    """The scorer flags given, as `TaskScorer` options (those not given: the reference evaluators' readings,
    or under `evaluate --protocol` that tool's)."""
    options: dict[str, dict] = {"kie": {"extract_json": args.kie_extract_json, "accept_lists": args.kie_accept_lists}}
    if args.vqa_processing is not None:
        options["vqa"] = {"processing": args.vqa_processing}
    return options


def _add_scorer_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--vqa-processing",
        choices=("m4c", "vlmevalkit"),
        help="TextVQA answer processing: mmf's m4c evaluator (InternVL's; the default) or VLMEvalKit's "
        "(the default under evaluate --protocol vlmevalkit)",
    )
    command.add_argument(
        "--kie-extract-json",
        action="store_true",
        help="KIE: also read JSON out of code fences or surrounding prose (default: Donut's whole-text JSON)",
    )
    command.add_argument(
        "--kie-accept-lists",
        action="store_true",
        help="KIE: score top-level JSON lists too (default: a JSON object, as Donut's references are)",
    )


def _evaluate(args: argparse.Namespace) -> int:
    from h2ovl.evaluate import EvaluationRequest, evaluate

    request = EvaluationRequest(
        data=str(args.data),
        ckpt=args.ckpt,
        released=args.released,
        task=args.task,
        limit=args.limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        max_length=args.max_length,
        precision=args.precision,
        out=args.out,
        experiment=args.experiment,
        tracking_uri=args.tracking_uri,
        scorer_options=_scorer_options(args),
        benchmark=args.benchmark,
        images=args.images,
        protocol=args.protocol,
    )
    print(json.dumps(evaluate(request)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from h2ovl.data.benchmarks.catalog import BENCHMARKS, PROTOCOLS

    parser = argparse.ArgumentParser(
        prog="h2ovl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in LIGHTNING_SUBCOMMANDS:  # listed for --help; main() hands them to LightningCLI
        commands.add_parser(name, help=f"LightningCLI {name} (see `h2ovl {name} --help`)", add_help=False)

    preview = commands.add_parser("preview", help="draw the tiling of one image and print its facts")
    preview.add_argument("image", type=Path)
    preview.add_argument(
        "--preprocessor",
        default="DynamicResolution",
        help="fixed, dynamic or msac (or the class, as configs name it: FixedResize, DynamicResolution, MSAC, a class path)",
    )
    preview.add_argument("--max-tiles", type=int, default=6)
    preview.add_argument("--tile-size", type=int, default=448)
    preview.add_argument("--patch-size", type=int, default=14, help="ViT patch size, for the visual-token count")
    preview.add_argument("--no-thumbnail", action="store_true")
    preview.add_argument(
        "--fast-path", action="store_true", help="reduced-scale JPEG decoding (see docs/preprocessing.md)"
    )
    preview.add_argument("--out", type=Path, help="where to write the preview PNG")
    preview.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    preview.set_defaults(handler=_preview)

    demo = commands.add_parser("demo", help="the README's main job on the embedded defaults")
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"))
    demo.add_argument("--preprocessing", action="store_true", help="only the preprocessing preview on generated images")
    demo.add_argument("--long", action="store_true", help="the longer, stronger demo (ablations/cpu-demo-long.yaml)")
    demo.add_argument("--dry-run", action="store_true", help="print the ablation's trials; run nothing")
    demo.add_argument(
        "--stage-seed",
        type=int,
        help="the shared stages' seed (default: the spec's, 0); docs/results.md records the demo over several",
    )
    demo.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    # Two single-threaded trials at a time: on 2 cores the fine-tunes take 5 minutes instead of 8 (same
    # metrics; each variant's two seeds share the machine, so samples/s stays comparable across rows).
    demo.add_argument("--parallel", type=int, default=2, help="trials at a time (default 2)")
    demo.set_defaults(handler=_demo)

    synth = commands.add_parser("synth", help="write synthetic OCR/document data and its meta files")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--n", type=int, required=True, help="samples in all, split over the tasks")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--tasks", nargs="+", help=f"a subset of: {' '.join(TASKS)} (default: all)")
    synth.add_argument("--test-fraction", type=float, default=0.1, help="held out per task (meta_test.json)")
    synth.add_argument("--max-side", type=int, default=768, help="largest image side in pixels")
    synth.set_defaults(handler=_synth)

    data = commands.add_parser("data", help="data tools").add_subparsers(dest="data_command", required=True)
    optimize = data.add_parser("optimize", help="convert a mixture to LitData optimized chunks")
    optimize.add_argument("meta", type=Path)
    optimize.add_argument("out", type=Path)
    optimize.add_argument("--num-workers", type=int, default=1)
    optimize.add_argument("--chunk-bytes", default="64MB")
    optimize.add_argument("--url-prefix", help="write meta entries as PREFIX/NAME (after uploading OUT there)")
    optimize.set_defaults(handler=_data_optimize)
    inspect = data.add_parser("inspect", help="build every sample once; print lengths, tiles and bad-sample counts")
    inspect.add_argument("meta", type=Path)
    inspect.add_argument(
        "--preset",
        default="tiny",
        help="model preset whose tokenizer and preprocessor to use (tiny, h2ovl-0.8b, h2ovl-2b, ...)",
    )
    inspect.add_argument("--tokenizer", help="the preset's tokenizer: a folder or hub id (the real presets need one)")
    inspect.add_argument(
        "--max-length", type=int, default=2048, help="the training max_length (truncation counts as in training)"
    )
    inspect.add_argument("--limit", type=int, help="at most this many records per dataset")
    inspect.set_defaults(handler=_data_inspect)

    tasks = ("auto", "ocrbench", "anls", "vqa", "kie", "cer")
    score = commands.add_parser("score", help="score a predictions file; the last line is a JSON object of scores")
    score.add_argument("predictions", type=Path, help="jsonl records, or OCRBench's .json list")
    score.add_argument("--task", choices=tasks, required=True, help="auto: each record's 'scorer' field")
    score.add_argument("--out", type=Path, help="also write the scores here")
    _add_scorer_options(score)
    score.set_defaults(handler=_score)

    evaluate = commands.add_parser("evaluate", help="generate answers for a dataset, score them, log them to MLflow")
    model = evaluate.add_mutually_exclusive_group(required=True)
    model.add_argument("--ckpt", help="a Lightning checkpoint (logs into its training run)")
    model.add_argument(
        "--released",
        help="a released model: its directory (config.json, safetensors, tokenizer) or hub id "
        "(h2oai/h2ovl-mississippi-2b; the Hugging Face cache, HF_HUB_OFFLINE respected)",
    )
    evaluate.add_argument(
        "--data",
        required=True,
        help="meta file or jsonl of records, or a benchmark as downloaded: official JSON (or ChartQA's "
        "test folder), VLMEvalKit TSV, Hugging Face parquet file/folder/glob",
    )
    evaluate.add_argument("--benchmark", choices=sorted(BENCHMARKS), help="the benchmark, where the file does not tell")
    evaluate.add_argument("--images", help="an official release's image folder, where it is not beside the file")
    evaluate.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="plain",
        help="plain: the question as written, 64 new tokens; vlmevalkit: VLMEvalKit's H2OVL prompts, "
        "1024 new tokens and scorers (how the paper's numbers were made)",
    )
    evaluate.add_argument("--task", choices=tasks, default="auto", help="auto: each record's 'scorer' field")
    evaluate.add_argument("--limit", type=int, help="the first N records only")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--max-new-tokens", type=int, help="answer budget (default: the protocol's, else 64)")
    evaluate.add_argument("--max-length", type=int, default=4096, help="prompt tokens kept (images never cut)")
    evaluate.add_argument("--precision", help="Lightning precision (default: bf16-mixed on GPU, 32-true on CPU)")
    evaluate.add_argument(
        "--out", help="folder for predictions.jsonl and scores.json (default outputs/eval/<model>-<data>)"
    )
    evaluate.add_argument(
        "--experiment", default="evaluate", help="MLflow experiment of a run made for a released model"
    )
    evaluate.add_argument(
        "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"
    )
    _add_scorer_options(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser(
        "export", help="write a model in the released InternVL-chat layout or transformers' native InternVL"
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="a Lightning checkpoint of a run")
    source.add_argument("--released", help="a released model directory or hub id")
    export.add_argument("--out", type=Path, required=True, help="the folder to write")
    export.add_argument(
        "--format",
        choices=("transformers", "released"),
        default="transformers",
        help="transformers: InternVLForConditionalGeneration + processor, no remote code; released: InternVL-chat layout",
    )
    export.set_defaults(handler=_export)

    consolidate = commands.add_parser(
        "consolidate", help="one checkpoint file from the folder of a sharded (FSDP2 distributed) save"
    )
    consolidate.add_argument("checkpoint", type=Path, help="the folder Lightning wrote (save_distributed_checkpoint)")
    consolidate.add_argument("--out", type=Path, required=True, help="the .ckpt file to write")
    consolidate.set_defaults(handler=_consolidate)

    for name, handler, description in (
        ("sweep", _sweep, "run a sweep spec: every trial its own `h2ovl fit`"),
        ("ablate", _ablate, "run an ablation spec, then write its table and plots"),
    ):
        command = commands.add_parser(name, help=description)
        command.add_argument("spec", type=Path)
        command.add_argument("--dry-run", action="store_true", help="print the trials and their overrides; run nothing")
        command.add_argument(
            "--force",
            action="store_true",
            help="rerun from scratch the trials whose resolved config changed since they ran (else an error)",
        )
        command.add_argument("--launcher", choices=("local", "slurm"), default="local")
        command.add_argument("--parallel", type=int, default=1, help="trials at a time (local: on disjoint GPUs)")
        command.add_argument("--only", nargs="+", help="trial or variant names to run")
        command.add_argument("--sweep-id", help="default: the spec's name (the same id resumes)")
        command.add_argument("--out", default="outputs/sweeps", help="sweep folders go here")
        command.add_argument(
            "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"
        )
        command.set_defaults(handler=handler)

    table = commands.add_parser("table", help="ablation table (Markdown, CSV, LaTeX) and plots from MLflow alone")
    source = table.add_mutually_exclusive_group(required=True)
    source.add_argument("--sweep", help="a sweep id")
    source.add_argument("--experiment", help="an MLflow experiment (rows: the runs' `variant` tags or names)")
    table.add_argument("--metric", nargs="+", help="metrics to tabulate (default for a sweep: its metric and report)")
    table.add_argument("--baseline", help="the variant differences are against")
    table.add_argument("--out", type=Path)
    table.add_argument("--tracking-uri")
    table.set_defaults(handler=_table)
    return parser


def _show_our_log() -> None:
    """The package's own INFO lines (parameters per part, embedding growth, resumed runs, ...) on stderr,
    without turning on every library's INFO chatter."""
    import logging

    class CurrentStderr(logging.StreamHandler):
        """Writes to whatever `sys.stderr` is when a record comes (callers that swap it, as test captures
        do, would otherwise leave the handler writing to a closed stream)."""

        @property
        def stream(self):  # type: ignore[override]
            return sys.stderr

        @stream.setter
        def stream(self, value) -> None:
            pass

    logger = logging.getLogger("h2ovl")
    if not logger.handlers:  # records still propagate (to pytest's capture, say); root has no handler here
        handler = CurrentStderr()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command. A user's mistake (a `UserError`, raised where it is detected) ends in one line on stderr
    and exit code 2; any other exception is a bug and keeps its traceback; `--debug` (anywhere on the line) or `H2OVL_DEBUG=1` re-raises it
    with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("H2OVL_DEBUG") == "1"
    argv = [arg for arg in argv if arg != "--debug"]
    _show_our_log()
    command = argv[0] if argv else "h2ovl"
    try:
        if argv and argv[0] in LIGHTNING_SUBCOMMANDS:  # LightningCLI owns these, flags and all
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            from h2ovl.training.lightning_cli import run_lightning

            try:
                run_lightning(argv)
            except SIGTERMException:  # a SystemExit without a code: it would exit 0
                print(f"h2ovl {command}: stopped by SIGTERM; resume with --ckpt_path last", file=sys.stderr)
                return 128 + signal.SIGTERM
            return 0
        args = build_parser().parse_args(argv)
        command = args.command
        make_output_folder(args)
        return args.handler(args)
    except Stopped as stopped:
        print(f"h2ovl {command}: {stopped}", file=sys.stderr)
        return 128 + stopped.signum
    except RunFailed as failed:
        if debug:
            raise
        print(f"h2ovl {command}: {_one_line(failed)}", file=sys.stderr)
        return 1
    except UserError as err:
        if debug:
            raise
        print(f"h2ovl {command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


#: The commands whose `--out` names a file (the others name a folder).
OUT_IS_A_FILE = ("preview", "score", "consolidate")


def make_output_folder(args: argparse.Namespace) -> None:
    """Creates the folder `--out` writes to, before any work: one that cannot be made is the user's to fix."""
    out = getattr(args, "out", None)
    if out is None:
        return
    folder = Path(out).parent if args.command in OUT_IS_A_FILE else Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SettingError(f"--out {out}: cannot create the folder {folder}: {error.strerror or error}") from None


def _one_line(err: BaseException) -> str:
    """The error as one line: multi-line messages (lists of problems) are joined with "; "."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # A line that ends in ":" introduces the next ("Parser key "x":" then what is wrong with it).
    return "".join(line + (" " if line.endswith(":") else "; ") for line in lines[:-1]) + (lines[-1] if lines else "")


if __name__ == "__main__":
    sys.exit(main())
