# Quickstart: `make demo` then `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: 2.13.0 is a local CPU wheel here; a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/videoforge demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/dit_forward.py
	$(BIN)/python bench/vae_decode.py
	$(BIN)/python bench/vae_train_step.py
	$(BIN)/python bench/generate_step.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/text_length_groups.py
	$(BIN)/python bench/curate_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
