# Two entry points for a fresh machine: `make run` (main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/shapes
CONFIG ?= configs/shapes.py
# Captions `make run` samples after training (words of the captioned_shapes vocabulary).
SAMPLE_TEXT ?= --text "a small red star on the left" \
	--text "a big blue square against a black background" \
	--text "a green circle is above a yellow triangle"

.PHONY: run test test-slow benchmark clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m mirrorgan_jax.main --config $(CONFIG) --workdir $(WORKDIR)
	$(PY) -m mirrorgan_jax.sample_cli --workdir $(WORKDIR) --num-samples 4 $(SAMPLE_TEXT)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

# Checks kept out of CI for time (pytest marker `slow`).
test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow tests

clean:
	rm -rf $(VENV) .pytest_cache
