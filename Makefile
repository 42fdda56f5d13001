# Two commands for maintainers: `make test` and `make book`. Both build .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))

.PHONY: test unit nbval book execute bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $(STAMP)

## Unit tests, then every notebook under strict nbval (outputs must match what is committed).
test: unit nbval

unit: $(STAMP)
	$(BIN)/python -m pytest tests

nbval: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider --nbval --nbval-current-env \
		--nbval-cell-timeout=600 --sanitize-with tools/nbval_sanitize.cfg $(NOTEBOOKS)

## Execute every notebook from a fresh kernel and build the HTML book; any warning fails.
book: $(STAMP)
	$(BIN)/jupyter-book build --all -W -n --keep-going .

## Refresh the committed outputs: run each notebook top to bottom in a fresh kernel.
execute: $(STAMP)
	$(BIN)/python tools/execute_notebooks.py $(NOTEBOOKS)

bench: $(STAMP)
	$(BIN)/python -m lvm_tutorial.bench

clean:
	rm -rf _build
