# The two commands of the README, `make demo` and `make test`, create the virtual environment on
# first use from the committed lock (requirements/lock.txt: exact versions of the whole dependency
# tree), so every machine runs the set the suite passed on. Every other target relies on the same set-up.
VENV     ?= .venv
PYTHON   := $(VENV)/bin/python
STAMP    := $(VENV)/.h2ovl-installed
LOCK     := requirements/lock.txt
# Test workers: pytest-xdist processes, one per core by default.
WORKERS  ?= auto
# Where `make lock`, `make test-latest` and `make test-floor` build their throwaway environments.
SCRATCH  ?= /tmp/h2ovl-envs
PIP_TOOLS := pip-tools==7.6.2
UV       := uv==0.13.9

.PHONY: demo demo-long test test-slow test-all test-latest test-floor lock bench clean

$(STAMP): $(LOCK) setup.cfg pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --requirement $(LOCK)
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/h2ovl demo --out outputs/demo

# The same ablation trained longer, with more seeds (docs/results.md: its figures and wall time).
demo-long: $(STAMP)
	$(VENV)/bin/h2ovl demo --long --out outputs/demo-long

# Lint and format check (ruff, settings in pyproject.toml), then everything but the tests marked
# `slow`, on parallel workers.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PYTHON) -m pytest -n $(WORKERS) -m "not slow"

# Only the tests marked `slow` (whole sweeps, killed and resumed runs, every loss reduction, the paper
# recipes at real shape).
test-slow: $(STAMP)
	$(PYTHON) -m pytest -n $(WORKERS) -m slow

# Everything (what CI runs, through .ci/run).
test-all: test test-slow

# The lock, resolved anew from setup.cfg's ranges and the torch pair in requirements/torch.in.
lock:
	test -x $(SCRATCH)/lock/bin/python || python3 -m venv $(SCRATCH)/lock
	$(SCRATCH)/lock/bin/pip install --quiet $(PIP_TOOLS)
	$(SCRATCH)/lock/bin/pip-compile --quiet --upgrade --extra dev --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links --output-file $(LOCK) setup.cfg requirements/torch.in

# The newest releases that setup.cfg allows, in a throwaway venv: tells when to move the lock (not CI).
test-latest:
	rm -rf $(SCRATCH)/latest && python3 -m venv $(SCRATCH)/latest
	$(SCRATCH)/latest/bin/pip install --quiet --upgrade --editable ".[dev]"
	$(SCRATCH)/latest/bin/pip list --format=freeze > $(SCRATCH)/latest.txt
	$(SCRATCH)/latest/bin/python -m pytest -n $(WORKERS)
	@echo "versions tested: $(SCRATCH)/latest.txt"

# The oldest releases that setup.cfg allows (uv's lowest-direct resolution), in a throwaway venv:
# proves setup.cfg's lower bounds.
test-floor:
	test -x $(SCRATCH)/lock/bin/python || python3 -m venv $(SCRATCH)/lock
	$(SCRATCH)/lock/bin/pip install --quiet $(UV)
	$(SCRATCH)/lock/bin/uv pip compile --quiet --resolution lowest-direct --python-version 3.11 --extra dev \
		--output-file $(SCRATCH)/floor.txt setup.cfg
	rm -rf $(SCRATCH)/floor && python3 -m venv $(SCRATCH)/floor
	$(SCRATCH)/floor/bin/pip install --quiet --requirement $(SCRATCH)/floor.txt
	$(SCRATCH)/floor/bin/pip install --quiet --no-deps --editable .
	$(SCRATCH)/floor/bin/python -m pytest -n $(WORKERS)
	@echo "versions tested: $(SCRATCH)/floor.txt"

bench: $(STAMP)
	$(PYTHON) benchmarks/preprocess.py
	$(PYTHON) benchmarks/model.py
	$(PYTHON) benchmarks/packing.py
	$(PYTHON) benchmarks/generate.py
	$(PYTHON) benchmarks/eval_files.py

clean:
	rm -rf outputs .pytest_cache .hypothesis
