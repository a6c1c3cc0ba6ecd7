"""Every Python block of the README and docs/ runs as written (in a scratch folder, after the set-up it
names: an exported model for the transformers example). The shell blocks are run, parsed or marked as
examples by `test_doc_commands.py`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import noise_image
from training_runs import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    block for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
]


def _prepare(block: str, folder: Path) -> None:
    """What a block takes for granted: an exported model and a page image, where it names them."""
    if "outputs/export/cpu-tiny" in block:
        import torch

        from h2ovl.model import H2OVL
        from h2ovl.model.hf_internvl import export_hf_internvl

        torch.manual_seed(0)
        model, tokenizer = H2OVL.from_preset("tiny")
        export_hf_internvl(model, folder / "outputs/export/cpu-tiny", tokenizer)
    if "page.png" in block:
        noise_image(200, 120).save(folder / "page.png")


def test_the_readme_and_docs_have_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.strip().splitlines()[0][:40])
def test_python_block_runs(block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    _prepare(block, tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})  # noqa: S102 - our own README


def test_docs_are_self_contained_and_their_links_resolve():
    """The documentation points only inside the repository (no SPEC or sibling folders)."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        outside = "../" + "shared"  # the sibling folder of this checkout, which a clone does not have
        assert "SPEC" not in text and outside not in text, page
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def _verdict_blocks(page: Path) -> list[str]:
    return re.findall(r"```text\n(claims, judged on .*?)```", page.read_text(encoding="utf-8"), re.S)


def test_the_demo_conclusions_shown_are_the_verdicts_of_the_recorded_runs_on_the_specs_claims():
    """The verdict blocks docs/results.md keeps with its recorded runs judge exactly the specs' claims: a claim
    edited in a spec fails here. The README shows no single run's block: it states the claims that held in
    every recorded run (`test_demo_record.py`)."""
    from h2ovl.demo.ablation import DEMO_LONG_SPEC, DEMO_SPEC
    from h2ovl.sweeps import load_spec

    recorded = _verdict_blocks(ROOT / "docs/results.md")  # the demo's runs, then demo-long last
    assert len(recorded) >= 2 and _verdict_blocks(ROOT / "README.md") == []  # it states what held in all of them
    specs = [DEMO_SPEC] * (len(recorded) - 1) + [DEMO_LONG_SPEC]
    for block, spec in zip(recorded, specs):
        texts = re.findall(r"^- (?:HELD|WITHIN NOISE|REVERSED|NOT MEASURED): (.*) \(\S+ [\d., -]+ vs ", block, re.M)
        assert texts == [claim.text for claim in load_spec(spec).claims], spec.name
