"""The benchmarks `h2ovl evaluate` reads as distributed, and the evaluation protocols it can follow.

A `Benchmark` names its scorer (`h2ovl.scoring.tasks`) and the name VLMEvalKit gives its TSV file; a
`Protocol` is what a tool adds around a benchmark's question (a prompt suffix) and how long it lets the
model answer, so that a score can be compared with numbers made by that tool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from h2ovl.data.meta import MetaError
from h2ovl.errors import SettingError


@dataclass(frozen=True)
class Benchmark:
    name: str
    """Our name, as `--benchmark` takes it."""
    task: str
    """The scorer (`h2ovl.scoring.tasks.TASKS`)."""
    title: str
    vlmevalkit: str
    """VLMEvalKit's dataset name, the stem of its TSV file."""
    submission_id: str | None = None
    """The id field of the benchmark's own submission format (`[{<id>: ..., "answer": ...}]`), if it has one."""


BENCHMARKS: dict[str, Benchmark] = {
    "ocrbench": Benchmark("ocrbench", "ocrbench", "OCRBench", "OCRBench"),
    "textvqa": Benchmark("textvqa", "vqa", "TextVQA (val)", "TextVQA_VAL", submission_id="question_id"),
    "docvqa": Benchmark("docvqa", "anls", "DocVQA (val)", "DocVQA_VAL", submission_id="questionId"),
    "infovqa": Benchmark("infovqa", "anls", "InfographicVQA (val)", "InfoVQA_VAL", submission_id="questionId"),
    "chartqa": Benchmark("chartqa", "relaxed", "ChartQA (test: human + augmented)", "ChartQA_TEST"),
}


def benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise MetaError(f"unknown benchmark {name!r}: choose from {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


@dataclass(frozen=True)
class Protocol:
    name: str
    prompt_suffix: str = ""
    """Appended to every benchmark question."""
    max_new_tokens: int | None = None
    """The answer budget; None: the command's own (`--max-new-tokens`, 64 by default)."""
    scorer_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per task, the scorer options that tool's evaluator implies."""


PROTOCOLS: dict[str, Protocol] = {
    # The benchmark's question as written, short answers: quick checks of our own checkpoints.
    "plain": Protocol("plain"),
    # VLMEvalKit's H2OVL wrapper (`vlmeval/vlm/h2ovl_mississippi.py`), which made the paper's numbers: every
    # VQA-type benchmark (all five here) gets this suffix; greedy decoding, one beam, 1024 new tokens; its
    # TextVQA scorer processes answers its own way.
    "vlmevalkit": Protocol(
        "vlmevalkit",
        "\nAnswer the question using a single word or phrase.",
        1024,
        {"vqa": {"processing": "vlmevalkit"}},
    ),
}


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise SettingError(f"unknown protocol {name!r}: choose from {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]
