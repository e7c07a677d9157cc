# Each target creates .venv and installs the project into it on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?= -n 2 -m "not slow"

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

.PHONY: demo test test-slow bench
demo: $(VENV)/.installed  ## port the bundled example torch model and print the equivalence report
	$(PY) -m equivalence

test: $(VENV)/.installed  ## the whole test suite but the slow sweeps
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(VENV)/.installed  ## the long property-based sweeps and the whole model zoo
	$(PY) -m pytest -n 2 -m slow

bench: $(VENV)/.installed  ## the side-by-side speed suite
	$(PY) -m benchmarks
