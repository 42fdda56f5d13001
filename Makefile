# Two commands for maintainers: `make test` and `make book`. Both build .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))

.PHONY: test unit nbval nbval-default nbval-nofma nbval-onecore browser browser-deps chromium book execute bench clean

# The browser check needs Debian's chromium (driven by Playwright from the venv, which downloads
# no browser of its own) and MathJax 3 (npm), each installed once, and a built book: `make test`
# builds it when a source changed since the last build.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
MATHJAX := $(VENV)/npm/node_modules/mathjax/es5
BOOK_STAMP := _build/.book-built
BOOK_SOURCES := _config.yml _toc.yml references.bib $(shell find book lvm_tutorial -type f \
	-not -path '*/.ipynb_checkpoints/*' -not -path '*/__pycache__/*' 2>/dev/null)
JUPYTER_BOOK := $(BIN)/jupyter-book build --all -W -n --keep-going .

# The stamp is written last, so a .venv is complete only with it. A .venv without the stamp, or
# whose pip does not run, is what a failed or interrupted first attempt left (`venv` without
# Debian's python3.11-venv makes no pip; a pip install stopped halfway) and is rebuilt from
# scratch. A complete one is updated in place when requirements.txt or pyproject.toml change;
# the stamp is removed meanwhile, so an interrupted update is rebuilt too.
$(STAMP): requirements.txt pyproject.toml
	@if [ -e $(VENV) ] && { [ ! -f $@ ] || ! $(BIN)/python -m pip --version >/dev/null 2>&1; }; \
	then echo "$(VENV) was left half-made by an earlier attempt: rebuilding it"; rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "venv failed; on Debian/Ubuntu: sudo apt-get install python3.11-venv" >&2; exit 1; }
	rm -f $@
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

## Unit tests, every notebook under strict nbval (outputs must match what is committed), then
## every page of the built book in headless Chromium (screenshots in _build/screenshots/).
test: unit nbval browser

# Two pytest workers (pytest-xdist): the suites are mostly compilation, one core each.
# Unit tests 200 s -> 142 s; nbval 199 s -> 148 s, each notebook kept whole on one worker.
unit: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests

# Strict nbval, but a float matches to a unit of its last printed digit (tools/nbval_numbers.py),
# in three floating-point configurations, since low bits differ between machines: as is; the
# instruction set capped below FMA; one core per kernel (each worker pinned to its own core).
# All at the highest matmul precision, as a GPU without TF32 would compute. One at a time:
# `make nbval-onecore`; a subset: `make nbval NOTEBOOKS=book/01_mixtures.ipynb`.
NBVAL := PYTHONPATH="$(CURDIR)/tools" JAX_DEFAULT_MATMUL_PRECISION=highest $(BIN)/python -m pytest \
	-p nbval_numbers -p no:cacheprovider -n 2 --dist loadfile --nbval --nbval-current-env \
	--nbval-cell-timeout=600 --nbval-sanitize-with tools/nbval_sanitize.cfg

nbval: nbval-default nbval-nofma nbval-onecore

nbval-default: $(STAMP)
	$(NBVAL) $(NOTEBOOKS)

# The instruction-set cap names x86 levels; elsewhere (ARM) the pass says so and is skipped.
nbval-nofma: $(STAMP)
ifeq ($(shell uname -m),x86_64)
	XLA_FLAGS="$$XLA_FLAGS --xla_cpu_max_isa=AVX" $(NBVAL) $(NOTEBOOKS)
else
	@echo "nbval-nofma: skipped, --xla_cpu_max_isa=AVX is an x86 setting ($(shell uname -m) here)"
endif

nbval-onecore: $(STAMP)
	NBVAL_PIN_CPU=1 $(NBVAL) $(NOTEBOOKS)

browser: browser-deps $(BOOK_STAMP)
	$(BIN)/python tools/browser_check.py --self-test --mathjax $(MATHJAX)
	$(BIN)/python tools/browser_check.py --html _build/html --screenshots _build/screenshots \
		--mathjax $(MATHJAX)

browser-deps: chromium $(MATHJAX)/tex-mml-chtml.js

chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		$(APT_INSTALL) chromium >/dev/null; }

$(MATHJAX)/tex-mml-chtml.js: | $(STAMP)
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && $(APT_INSTALL) npm >/dev/null; }
	npm install --prefix $(VENV)/npm --no-audit --no-fund --silent mathjax@3.2.2
	touch $@

$(BOOK_STAMP): $(BOOK_SOURCES) $(STAMP)
	$(JUPYTER_BOOK)
	touch $@

## Execute every notebook from a fresh kernel and build the HTML book; any warning fails.
## (Skipped when nothing in the book or the package changed since the last build, so that
## `make test` followed by `make book` builds once.)
book: $(BOOK_STAMP)

## Refresh the committed outputs: run each notebook top to bottom in a fresh kernel.
execute: $(STAMP)
	JAX_DEFAULT_MATMUL_PRECISION=highest $(BIN)/python tools/execute_notebooks.py $(NOTEBOOKS)

bench: $(STAMP)
	$(BIN)/python bench/sumo_training.py --json bench/bench_cpu.json

clean:
	rm -rf _build
