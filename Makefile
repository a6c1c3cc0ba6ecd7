# The two commands of the README, `make demo` and `make test`, create the virtual environment on
# first use; every other target relies on the same set-up.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.h2ovl-installed

.PHONY: demo test bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet --editable ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/h2ovl demo --out outputs/demo

test: $(STAMP)
	$(PYTHON) -m pytest

bench: $(STAMP)
	$(PYTHON) benchmarks/preprocess.py
	$(PYTHON) benchmarks/model.py
	$(PYTHON) benchmarks/packing.py
	$(PYTHON) benchmarks/generate.py

clean:
	rm -rf outputs .pytest_cache .hypothesis
