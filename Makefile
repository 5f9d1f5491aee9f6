# `make run` and `make test` are the two commands a new user needs: each installs whatever is
# missing (TeX Live pieces from Debian's packages, a virtual environment from pyproject.toml and
# requirements.lock) and is quick when nothing is.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TEX_PACKAGES := texlive-latex-base texlive-fonts-recommended dvipng poppler-utils
SLURM_PACKAGES := slurmctld slurmd slurm-client munge
NODE_PACKAGES := nodejs npm
KATEX_PINS := pipeline/corpus/katex_walker/package.json pipeline/corpus/katex_walker/package-lock.json
BROWSER_PACKAGES := chromium
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test test-slurm deps tex node slurm browser lint bench clean paper

run: deps
	dvc repro

test: deps browser
	$(BIN)/pytest -q

# The workflow on a single-node SLURM the test starts and stops (tests/test_slurm.py, ~4 min):
# SLURM and munge from Debian's packages, the executor plugin from the `slurm` extra.
test-slurm: deps slurm $(VENV)/.installed-slurm
	$(BIN)/pytest -q -rA -m slurm tests/test_slurm.py

lint: deps
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/snakemake --lint

bench: deps
	$(BIN)/python benchmarks/render_throughput.py
	$(BIN)/python benchmarks/box_depth.py
	$(BIN)/python benchmarks/reliability.py
	$(BIN)/python benchmarks/prepare_scale.py
	$(BIN)/python benchmarks/decode_speed.py
	$(BIN)/python benchmarks/predict_batching.py
	$(BIN)/python benchmarks/determinism.py

# Singh 2018's recipe (recipes/singh2018.yaml) as one experiment: `make paper`, then
# `dvc exp show`. Days on GPUs; on a CPU only a smoke test (add e.g. -S train.max_steps=5).
paper: deps
	eval dvc exp run -n singh2018 $$($(BIN)/python -m pipeline recipe recipes/singh2018.yaml) $(EXTRA)

deps: tex $(VENV)/.installed .node/.installed

# KaTeX's parser for `python -m pipeline normalize`: Node from Debian's packages when missing
# (checked, like TeX), then the version package-lock.json pins, installed outside the package.
node:
	@if command -v node >/dev/null && command -v npm >/dev/null; then :; else \
	  echo "installing Node.js: $(NODE_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    $(NODE_PACKAGES) >/dev/null; \
	fi

.node/.installed: $(KATEX_PINS) | node
	mkdir -p .node && cp $(KATEX_PINS) .node/
	cd .node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# TeX is checked, not stamped: it lives outside the project and may come or go.
tex:
	@if command -v latex >/dev/null && command -v dvipng >/dev/null \
	    && command -v pdflatex >/dev/null && command -v pdftoppm >/dev/null \
	    && kpsewhich amsmath.sty amssymb.sty >/dev/null; then :; else \
	  echo "installing TeX Live pieces: $(TEX_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    $(TEX_PACKAGES) >/dev/null; \
	fi

# Chromium is checked, not stamped, like TeX: `serve`'s page is tested in it, headless
# (tests/evaluation/test_serve.py); only `make test` needs it.
browser:
	@if command -v chromium >/dev/null; then :; else \
	  echo "installing Chromium: $(BROWSER_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    $(BROWSER_PACKAGES) >/dev/null; \
	fi

# SLURM is checked, not stamped, like TeX. Only its daemons and clients: the test configures them.
slurm:
	@if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
	    && command -v sbatch >/dev/null && command -v munged >/dev/null; then :; else \
	  echo "installing SLURM and munge: $(SLURM_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    $(SLURM_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed-slurm: $(VENV)/.installed
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,slurm]'
	touch $@

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

clean:
	rm -rf data reports logs .snakemake .cache
