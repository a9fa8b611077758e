# Two entry points: `make demo` (set up and run the main job on the built-in example) and
# `make test` (set up and run the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

demo: $(STAMP)
	$(BIN)/lrkit demo

test: $(STAMP)
	$(BIN)/python -m pytest

# build/ too: a wheel built in place (pip wheel .) reuses build/lib, so a module deleted from src/
# would still ship
clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist src/*.egg-info
