# Two entry points for a fresh machine: `make demo` (upscale a sample image with the default
# model) and `make test` (the whole suite). Both bootstrap .venv with the CPU torch wheel.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all venv clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Pinned CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/make_sample.py .demo/sample.png
	$(BIN)/surge upscale .demo/sample.png -o .demo/out --overwrite
	@echo "Upscaled image written to .demo/out/"

# The default suite skips tests marked slow (end-to-end training, DDP, full-set re-scores) to stay
# under 5 minutes on 2 cores; test-all runs everything and is what CI runs.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .demo .pytest_cache
