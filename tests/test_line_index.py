"""The annotation index at scale: byte offsets and line numbers equal a line-by-line reading on awkward files,
built once and cached beside the data (keyed by size and modification time, rebuilt when either changes,
under $H2OVL_CACHE for read-only folders), memory-mapped rather than copied into loader workers; a LLaVA
list is converted to lines once."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from h2ovl.data import line_index
from h2ovl.data.meta import load_mixture
from h2ovl.data.sources import open_source


def reference(path: Path) -> list[tuple[int, int]]:
    out, offset = [], 0
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                out.append((offset, number))
            offset += len(line)
    return out


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_the_index_equals_a_line_by_line_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int):
    monkeypatch.setattr(line_index, "_CHUNK", chunk)  # lines cross chunk boundaries
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n\n   \n{"b": "x y"}\r\n\r\n' + b'{"c": "' + b"z" * 100 + b'"}\n \t \n{"d": 4}')
    assert line_index.scan_lines(path).tolist() == [list(pair) for pair in reference(path)]


def _records(n: int) -> list[str]:
    return [
        json.dumps(
            {"id": f"r{i}", "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]}
        )
        for i in range(n)
    ]


def test_the_index_is_cached_rebuilt_on_change_and_mapped_not_copied_into_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(_records(10_000)) + "\n")
    (spec,) = load_mixture(path)
    source = open_source(spec)
    caches = sorted(tmp_path.glob(".big.jsonl.index-*.npy"))
    assert len(caches) == 1 and len(source) == 10_000 and source.load(9_999)[0].turns == (("q9999", "a9999"),)
    assert isinstance(source._index, np.memmap)
    assert len(pickle.dumps(source)) < 2_000  # a worker gets the path, maps the index itself
    assert pickle.loads(pickle.dumps(source)).load(5)[0].id == "r5"

    monkeypatch.setattr(line_index, "scan_lines", lambda path: pytest.fail("the cached index was not used"))
    assert len(open_source(spec)) == 10_000
    monkeypatch.undo()
    with path.open("a") as file:  # the file changes: a new index, the old one removed
        file.write(_records(10_001)[-1] + "\n")
    assert len(open_source(spec)) == 10_001
    assert [p for p in tmp_path.glob(".big.jsonl.index-*.npy")] != caches and len(
        list(tmp_path.glob(".big.jsonl.index-*"))
    ) == 1


def test_a_read_only_data_folder_caches_under_h2ovl_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "d.jsonl").write_text("\n".join(_records(3)) + "\n")
    monkeypatch.setenv("H2OVL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != data)  # as if the folder were read-only
    assert len(open_source(load_mixture(data / "d.jsonl")[0])) == 3
    assert not list(data.glob(".*")) and len(list((tmp_path / "cache" / "index").rglob(".d.jsonl.index-*.npy"))) == 1


def test_a_llava_list_is_converted_to_lines_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "llava.json"
    path.write_text(json.dumps([json.loads(r) for r in _records(5)]))
    source = open_source(load_mixture(path)[0])
    assert [source.load(i)[0].id for i in range(5)] == [f"r{i}" for i in range(5)] and source.where(3) == f"{path}[3]"
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("the list was parsed again"))
    assert len(open_source(load_mixture(tmp_path / "llava.json")[0])) == 5
