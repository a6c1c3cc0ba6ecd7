"""`h2ovl preview` and `h2ovl demo` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from h2ovl.cli import main

from conftest import noise_image


def test_preview_json_reports_msac_grids_tiles_and_tokens(tmp_path: Path, capsys, write_image):
    image = write_image(noise_image(606, 1000), "receipt.png")
    out = tmp_path / "preview.png"
    assert main(["preview", str(image), "--preprocessor", "MSAC", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["grid"] == [2, 3]
    assert summary["coarse_grid"] == [2, 3] and summary["fine_grid"] == [3, 2]
    assert summary["n_tiles"] == 13 and summary["n_tokens"] == 13 * 256
    assert Image.open(out).size[0] > 0


def test_preview_options_change_the_plan(capsys, write_image):
    image = write_image(noise_image(1000, 250), "wide.png")
    main(
        [
            "preview",
            str(image),
            "--preprocessor",
            "h2ovl.preprocessing.DynamicResolution",
            "--max-tiles",
            "2",
            "--tile-size",
            "224",
            "--no-thumbnail",
            "--json",
        ]
    )
    summary = json.loads(capsys.readouterr().out.strip())
    assert summary["grid"] == [2, 1] and summary["n_tiles"] == 2 and summary["n_tokens"] == 2 * 64
    main(["preview", str(image), "--preprocessor", "FixedResize", "--json"])
    assert json.loads(capsys.readouterr().out.strip())["n_tiles"] == 1


def test_preview_of_a_broken_file_fails_with_its_name(tmp_path: Path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    assert main(["preview", str(bad)]) == 2
    assert "broken.jpg" in capsys.readouterr().err


def test_demo_is_the_cpu_ablation_over_three_preprocessors_and_pixel_shuffle_with_three_seeds(tmp_path: Path, capsys):
    assert main(["demo", "--dry-run", "--out", str(tmp_path)]) == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = [t["trial"] for t in plan["trials"]]
    assert (
        names[:3] == ["init-stage-1", "init-stage-2", "init-stage-3"] and len(names) == 21
    )  # a curriculum, then the trials
    assert {n.rsplit("/", 1)[0] for n in names[3:]} == {f"{p}{s}ps" for p in ("fixed", "dynamic", "msac") for s in "+-"}
    assert {n.rsplit("/", 1)[1] for n in names[3:]} == {"seed=0", "seed=1", "seed=2"}
    # The last shared stage shows each of its images through one of the variants' own preprocessors, all
    # of them: it favours none.
    shared = plan["trials"][2]["overrides"]["model.preprocessor"]
    assert shared["class_path"] == "h2ovl.preprocessing.MixedViews"
    variants = {json.dumps(t["overrides"]["model.preprocessor"], sort_keys=True) for t in plan["trials"][3:]}
    assert {json.dumps(c, sort_keys=True) for c in shared["init_args"]["choices"]} == variants
    assert plan["folder"] == str(tmp_path / "sweeps" / "cpu-demo")
    assert plan["parallel"] == 2  # two single-threaded trials at a time
    # Everything but the MLflow store under --out, the data too.
    assert plan["trials"][0]["overrides"]["data.synthetic"]["out"] == str(tmp_path / "synthetic-square")
    assert main(["demo", "--long", "--dry-run", "--out", str(tmp_path)]) == 0
    long_plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert long_plan["folder"] == str(tmp_path / "sweeps" / "cpu-demo-long") and len(long_plan["trials"]) > len(names)
    # The shared stages run once, under their own seed: a robustness study varies it alone.
    assert [t["seed"] for t in plan["trials"][:3]] == [0, 0, 0]
    assert main(["demo", "--dry-run", "--stage-seed", "2", "--out", str(tmp_path / "other")]) == 0
    reseeded = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["trials"]
    assert [t["seed"] for t in reseeded[:3]] == [2, 2, 2] and [t["seed"] for t in reseeded[3:]] == [
        t["seed"] for t in plan["trials"][3:]
    ]


def test_demo_data_goes_under_its_out_folder(tmp_path: Path):
    from h2ovl.demo.ablation import demo_spec

    for long in (False, True):
        spec = demo_spec(long, tmp_path)
        folders = [spec.overrides["data.synthetic"]["out"]] + [
            s["overrides"]["data.synthetic"]["out"] for s in spec.init_stages
        ]
        assert len(folders) == len(set(folders)) == len(spec.init_stages) + 1
        assert all(Path(f).parent == tmp_path for f in folders)


def test_the_demo_preprocessors_cut_its_strips_three_different_ways():
    """Fixed resize: one squashed tile; dynamic resolution: a row of tiles; MSAC: that row and a finer grid
    on top, so none of the three rows of the demo's table repeats another."""
    from PIL import Image

    from h2ovl.demo.ablation import DEMO_SPEC
    from h2ovl.preprocessing import instantiate_preprocessor
    from h2ovl.sweeps import load_spec

    spec = load_spec(DEMO_SPEC)
    strips = [Image.new("RGB", (round(100 * aspect), 100), "white") for aspect in (2.7, 3.3, 3.9, 4.2)]
    for strip in strips:
        cuts = {}
        for variant in ("fixed+ps", "dynamic+ps", "msac+ps"):
            preprocessor = instantiate_preprocessor(spec.variants[variant]["model.preprocessor"])
            tiled = preprocessor(strip)
            cuts[variant] = (tuple(sorted(tiled.plan.grids.items())), tiled.n_tiles)
        assert len(set(cuts.values())) == 3, (strip.size, cuts)


def test_preprocessing_demo_writes_previews_and_a_summary(tmp_path: Path, capsys):
    assert main(["demo", "--preprocessing", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert {row["image"] for row in rows} >= {"receipt_606x1000.png", "banner_2000x500.png"}
    receipt = next(row for row in rows if row["image"] == "receipt_606x1000.png")
    assert (receipt["fixed"]["n_tiles"], receipt["dynamic"]["n_tiles"], receipt["msac"]["n_tiles"]) == (1, 7, 13)
    assert all(Path(row[name]["preview"]).is_file() for row in rows for name in ("fixed", "dynamic", "msac"))
    assert "previews:" in capsys.readouterr().out


def test_a_pretrained_part_that_cannot_be_had_is_one_line_and_exit_2(tmp_path: Path):
    """The paper recipes name hub ids: offline and with an empty cache, a user gets one line naming the
    key and value, not a traceback."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "h2ovl.cli",
            "fit",
            "--config",
            str(root / "experiments/paper/0.8b/pretrain-1.yaml"),
            "--trainer.accelerator",
            "cpu",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "args parameter is intended" not in result.stderr and "extends" not in result.stderr  # no YAML dump
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("h2ovl fit: error: model.init.tokenizer 'h2oai/h2o-danube3-500m-base': neither a local path")


def test_every_model_and_data_option_of_fit_has_its_help(capsys):
    """jsonargparse reads each option's help from the class docstrings (a summary line, then `Args:`)."""
    import re

    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    blocks = re.split(r"\n(?=  --)", text)
    undocumented = []
    for block in blocks:
        match = re.match(r"  --((model|data)\.[a-z_]+) ", block)
        rest = re.sub(r"^  --\S+(?: [A-Z_][A-Z0-9_]*)?", "", block)  # the option and its metavar
        if match and not re.sub(r"\(type: .*?\)|\s+", "", rest, flags=re.S) and "CONFIG" not in block:
            undocumented.append(match.group(1))
    assert not undocumented, undocumented
    assert "rows per micro-batch and device" in text and "AdamW's learning rate" in text
