"""Run a script as if some installed packages were absent (the GPU machine's image lacks the tracker, sweep,
data-streaming and scorer packages): `python absent_packages.py PKG,PKG SCRIPT ARGS...`. Importing a
named package raises ModuleNotFoundError, as it would where it is not installed."""

from __future__ import annotations

import importlib.abc
import runpy
import sys


class _Absent(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (absent for this test)", name=name)
        return None


if __name__ == "__main__":
    absent, script, *args = sys.argv[1:]
    sys.meta_path.insert(0, _Absent(set(absent.split(","))))
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
