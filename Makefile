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

.PHONY: run test test-slow demo browser benchmark clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

# The demo's extra (Gradio) and the driver of its browser test (Playwright).
$(VENV)/.test-installed: $(VENV)/.installed requirements-demo.txt requirements-test.txt
	$(VENV)/bin/pip install -q -r requirements-test.txt
	touch $@

$(VENV)/.demo-installed: $(VENV)/.installed requirements-demo.txt
	$(VENV)/bin/pip install -q -r requirements-demo.txt
	touch $@

# Debian's chromium for the demo's browser test (apt-get where root; else a hint).
browser:
	bash launch/install_chromium.sh

run: $(VENV)/.installed
	$(PY) -m mirrorgan_jax.main --config $(CONFIG) --workdir $(WORKDIR)
	$(PY) -m mirrorgan_jax.sample_cli --workdir $(WORKDIR) --num-samples 4 $(SAMPLE_TEXT)

test: $(VENV)/.test-installed browser
	$(PY) -m pytest -q tests

# The web demo of a trained run (after `make run`): prints its URL (127.0.0.1).
demo: $(VENV)/.demo-installed
	$(PY) -m mirrorgan_jax.demo --workdir $(WORKDIR)

# Checks kept out of CI for time (pytest marker `slow`).
test-slow: $(VENV)/.test-installed
	$(PY) -m pytest -q -m slow tests

clean:
	rm -rf $(VENV) .pytest_cache
