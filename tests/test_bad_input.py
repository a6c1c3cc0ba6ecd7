"""Bad input and faults, by class: a user's mistake ends in one line naming the file, key or value and
exit code 2 (never a traceback; `--debug` shows one); checkpoints are data, never code; records reach only
the files under their dataset's root; nothing is accepted silently; a full disk and a killed writer leave
the last good checkpoint and no litter."""

from __future__ import annotations

import errno
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from h2ovl.cli import main
from h2ovl.data.meta import MetaError, load_mixture
from h2ovl.data.records import BadSample
from h2ovl.data.sources import open_source
from h2ovl.errors import CheckpointError
from h2ovl.partial_writes import remove_stale_partials
from h2ovl.sweeps.results import filter_value
from h2ovl.sweeps.spec import SpecError, load_spec
from h2ovl.training import checkpoint_io
from h2ovl.training.checkpoint_io import AtomicCheckpointIO
from h2ovl.training.weights import load_checkpoint

from conftest import noise_image, write_jsonl
from training_runs import tiny_run_config, write_config

MARKER = "h2ovl-unpickled-code-ran"


class _Payload:
    """Stands for any object a crafted checkpoint names to run code while it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _one_line_error(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"h2ovl {command}: error: "), err[-3000:]
    return last


@pytest.fixture
def fit_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "fit.yaml", tiny_run_config(tmp_path, "bad", 1))


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "bad_json": tmp_path / "bad.json",
        "not_utf8": tmp_path / "latin1.json",
        "no_annotation": tmp_path / "nokey.json",
        "garbage_ckpt": tmp_path / "garbage.ckpt",
        "planted_ckpt": tmp_path / "planted.ckpt",
        "truncated_ckpt": tmp_path / "cut.ckpt",
    }
    files["bad_json"].write_text("{not json")
    files["not_utf8"].write_bytes(b'{"ds": {"root": "caf\xe9"}}')
    files["no_annotation"].write_text(json.dumps({"ds": {"root": "."}}))
    files["garbage_ckpt"].write_bytes(b"\x00not a checkpoint" * 64)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": _Payload(tmp_path / MARKER)}, files["planted_ckpt"])
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, whole)
    files["truncated_ckpt"].write_bytes(whole.read_bytes()[:300])
    return files


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--data.train", "{missing}"], "does not exist"),
        (["--data.train", "{bad_json}"], "bad.json: cannot parse"),
        (["--data.train", "{not_utf8}"], "latin1.json: the meta file is not UTF-8 text (byte 0xe9"),
        (["--data.train", "{no_annotation}"], "nokey.json: dataset 'ds' is missing 'annotation'"),
        (["--trainer.max_steps", "-5"], "max_steps"),
        (["--model.preset", "nope"], "unknown preset 'nope'"),
        (["--data.batching.batch_size", "0"], "data.batching.batch_size must be at least 1, got 0"),
        (["--data.on_bad_sample", "skipp"], "'skipp'"),
        (["--ckpt_path", "{missing}"], "--ckpt_path"),
        (["--ckpt_path", "{garbage_ckpt}"], "garbage.ckpt: not a readable checkpoint"),
        (["--ckpt_path", "{truncated_ckpt}"], "cut.ckpt: not a readable checkpoint"),
        (["--ckpt_path", "{planted_ckpt}"], "planted.ckpt: refusing to load a checkpoint that holds more than weights"),
        (["--model.attention", "flash"], "flex_attention"),  # the accepted names
        (["--model.attention", "flex_attention"], "model.attention: flex_attention has no backward on CPU"),
    ],
    ids=[
        "meta-missing",
        "meta-bad-json",
        "meta-not-utf8",
        "meta-missing-key",
        "max-steps",
        "preset",
        "batch-size-0",
        "on-bad-sample",
        "ckpt-missing",
        "ckpt-garbage",
        "ckpt-truncated",
        "ckpt-planted",
        "attention-name",
        "flex-attention-training-on-cpu",
    ],
)
def test_fit_mistakes_are_one_line_and_exit_2(args, expected, fit_config, bad_files, tmp_path, capsys):
    paths = {**bad_files, "missing": tmp_path / "missing.json"}
    args = [arg.format(**paths) for arg in args]
    assert main(["fit", "--config", str(fit_config), *args]) == 2
    assert expected in _one_line_error(capsys, "fit")
    assert not (tmp_path / MARKER).exists()


def test_a_planted_checkpoint_never_runs_code_anywhere(bad_files, tmp_path, capsys):
    planted = bad_files["planted_ckpt"]
    with pytest.raises(CheckpointError, match="it names"):
        load_checkpoint(planted)
    assert main(["evaluate", "--ckpt", str(planted), "--data", str(tmp_path / "x.jsonl")]) == 2
    assert "refusing to load" in _one_line_error(capsys, "evaluate")
    assert main(["export", "--ckpt", str(planted), "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, "export")
    assert not (tmp_path / MARKER).exists()


def test_debug_shows_the_traceback(fit_config, capsys):
    with pytest.raises(ValueError, match="unknown preset"):
        main(["fit", "--config", str(fit_config), "--model.preset", "nope", "--debug"])


def test_plain_commands_name_unreadable_files(tmp_path, capsys):
    (tmp_path / "folder.png").mkdir()
    assert main(["preview", str(tmp_path / "folder.png"), "--preprocessor", "DynamicResolution"]) == 2
    assert "folder.png" in _one_line_error(capsys, "preview")
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"name: caf\xe9\n")
    assert main(["sweep", str(spec), "--dry-run"]) == 2
    assert "spec.yaml: the sweep spec is not UTF-8 text" in _one_line_error(capsys, "sweep")


# -- data: nothing silent, nothing outside the root ----------------------------------------------------------
def _meta(tmp_path: Path, annotation: Path, **extra) -> Path:
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"ds": {"root": str(tmp_path / "images"), "annotation": str(annotation), **extra}}))
    return meta


@pytest.mark.parametrize("content", ["", "\n  \n"], ids=["empty", "blank"])
def test_an_empty_annotation_file_is_named_everywhere(content, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    annotation = tmp_path / "empty.jsonl"
    annotation.write_text(content)
    meta = _meta(tmp_path, annotation)
    with pytest.raises(MetaError, match="empty.jsonl: dataset 'ds' holds no records"):
        open_source(load_mixture(meta)[0])
    assert main(["data", "inspect", str(meta)]) == 2
    assert "holds no records" in _one_line_error(capsys, "data")
    assert main(["evaluate", "--released", str(tmp_path / "nowhere"), "--data", str(meta)]) == 2
    _one_line_error(capsys, "evaluate")


def test_a_non_utf8_llava_annotation_is_named(tmp_path):
    (tmp_path / "images").mkdir()
    annotation = tmp_path / "llava.json"
    annotation.write_bytes(b'[{"conversations": "caf\xe9"}]')
    with pytest.raises(MetaError, match="llava.json: the annotation file is not UTF-8 text"):
        open_source(load_mixture(_meta(tmp_path, annotation))[0])


def test_image_paths_leaving_the_root_are_followed_unless_the_dataset_confines_them(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    noise_image(20, 20).save(tmp_path / "secret.png")
    noise_image(20, 20).save(images / "sub" / "ok.png")
    records = [
        {"image": path, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
        for path in (
            "sub/ok.png",
            "sub/../sub/ok.png",
            "../secret.png",
            str(tmp_path / "secret.png"),
            "sub/../../secret.png",
        )
    ]
    annotation = write_jsonl(tmp_path / "data.jsonl", records)
    source = open_source(load_mixture(_meta(tmp_path, annotation, allow_outside_root=False))[0])
    assert [p.name for p in source.load(0)[1] + source.load(1)[1]] == ["ok.png", "ok.png"]
    for index in (2, 3, 4):
        with pytest.raises(BadSample) as caught:
            source.load(index)
        assert caught.value.reason == "image_outside_root" and "allow_outside_root: false" in str(caught.value)
    followed = open_source(load_mixture(_meta(tmp_path, annotation))[0])  # InternVL's default: paths are followed
    assert [followed.load(i)[1][0].resolve() for i in (2, 3, 4)] == [(tmp_path / "secret.png").resolve()] * 3
    with pytest.raises(MetaError, match="allow_outside_root must be true or false"):
        load_mixture(_meta(tmp_path, annotation, allow_outside_root="yes"))


# -- sweeps: names and MLflow filters -------------------------------------------------------------------
def test_mlflow_filter_values_are_quoted_and_unsafe_names_refused_at_load(tmp_path):
    assert filter_value("plain") == "'plain'" and filter_value("it's") == '"it\'s"'
    with pytest.raises(ValueError, match="both quote characters"):
        filter_value("""it's "x\"""")
    base = Path(__file__).resolve().parents[1] / "experiments/cpu/tiny.yaml"
    for bad in ("it's", 'say "hi"', "back\\slash"):
        spec = tmp_path / "spec.yaml"
        spec.write_text(json.dumps({"name": "s", "base": str(base), "metric": "val/loss", "variants": {bad: {}}}))
        with pytest.raises(SpecError, match="may not be empty or hold quotes"):
            load_spec(spec)


def test_dry_run_parses_every_trial_through_the_fit_parser(tmp_path, capsys):
    base = Path(__file__).resolve().parents[1] / "experiments/cpu/tiny.yaml"
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"name": "typo", "base": str(base), "metric": "val/loss", "grid": {"model.lrr": [0.1]}}))
    assert main(["sweep", str(spec), "--dry-run", "--out", str(tmp_path / "sweeps")]) == 2
    assert "trial lrr=0.1/seed=0: Group 'model' does not accept option 'lrr'" in _one_line_error(capsys, "sweep")


# -- checkpoints on disk ------------------------------------------------------------------------------------
def test_a_full_disk_is_a_named_error_and_the_last_checkpoint_survives(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "ckpts/last.ckpt"
    io.save_checkpoint({"step": 1}, target)

    def fills_the_disk(obj, handle, *args, **kwargs):
        handle.write(b"half")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0"
        )  # torch's words for ENOSPC

    monkeypatch.setattr(checkpoint_io.torch, "save", fills_the_disk)
    with pytest.raises(
        CheckpointError,
        match="the disk filled up while writing this checkpoint .* the previous one under that name is intact",
    ):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.setattr(
        checkpoint_io.torch,
        "save",
        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")),
    )
    with pytest.raises(CheckpointError, match="disk filled up"):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]


def test_partial_files_of_killed_writers_are_removed_at_start(tmp_path):
    dead = tmp_path / ".last.ckpt.partial-4194302"  # above the default pid_max: no such process
    mine = tmp_path / f".last.ckpt.partial-{os.getpid()}"
    alive_other = tmp_path / ".best-3.ckpt.partial-1"  # pid 1 is always alive
    for path in (dead, mine, alive_other):
        path.write_bytes(b"partial")
    assert remove_stale_partials(tmp_path, "*.ckpt") == [dead]
    assert mine.exists() and alive_other.exists()


def test_a_checkpoint_that_is_a_zip_but_not_torchs_is_named(tmp_path):
    fake = tmp_path / "fake.ckpt"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("hello.txt", "not torch")
    with pytest.raises(CheckpointError, match="fake.ckpt: not a readable checkpoint"):
        load_checkpoint(fake)


def test_a_checkpoints_run_missing_from_the_store_gets_a_new_run(tmp_path):
    """`evaluate --ckpt` (or a resume) with a store that does not hold the checkpoint's run: a new run,
    tagged with the one it continues, instead of an error."""
    from h2ovl.training.tracking import MLflowTracker

    from training_runs import mlflow_runs

    tracker = MLflowTracker(
        experiment_name="moved", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", save_dir=str(tmp_path)
    )
    tracker.continue_run("0123456789abcdef0123456789abcdef")
    tracker.log_metrics({"eval/x": 1.0}, step=0)
    tracker.finalize("success")
    (run,) = mlflow_runs(tmp_path, "moved")
    assert run.info.run_id != "0123456789abcdef0123456789abcdef"
    assert (
        run.data.tags["h2ovl.resumed_run_id"] == "0123456789abcdef0123456789abcdef"
        and run.data.metrics["eval/x"] == 1.0
    )


def test_an_unreadable_image_is_named(tmp_path, monkeypatch, capsys):
    image = tmp_path / "locked.png"
    noise_image(20, 20).save(image)
    real = Path.read_bytes

    def denied(self):
        if self == image:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)  # root reads through chmod 000: simulate the refusal
    assert main(["preview", str(image), "--preprocessor", "DynamicResolution"]) == 2
    assert "locked.png: cannot be read: Permission denied" in _one_line_error(capsys, "preview")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--model.preprocessor", "msac", "--model.preprocessor.init_args.tile_size", "448"],
            "makes 448-px tiles but the 'tiny' ViT takes 64-px tiles: leave model.preprocessor.init_args.tile_size unset",
        ),
        (["--best.monitor", "val/cer/cer", "--model.val_generation.samples", "0"], "validation generates nothing"),
        (["--trainer.accelerator", "gpu"], "on a CPU machine add --trainer.accelerator cpu"),
    ],
    ids=["tile-size", "monitor-without-generation", "gpu-on-cpu"],
)
def test_settings_that_cannot_work_together_are_caught_at_start(args, expected, fit_config, capsys):
    assert main(["fit", "--config", str(fit_config), *args]) == 2
    assert expected in _one_line_error(capsys, "fit")


def test_min_dynamic_patch_is_refused_rather_than_ignored(tmp_path):
    (tmp_path / "images").mkdir()
    annotation = write_jsonl(
        tmp_path / "a.jsonl", [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]
    )
    assert load_mixture(_meta(tmp_path, annotation, min_dynamic_patch=1))  # InternVL's usual value: no effect
    with pytest.raises(MetaError, match="min_dynamic_patch=2 is not applied per dataset"):
        load_mixture(_meta(tmp_path, annotation, min_dynamic_patch=2))
