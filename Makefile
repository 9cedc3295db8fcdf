# Two entry points for a fresh machine: `make run` (main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/shapes
CONFIG ?= configs/shapes.py

.PHONY: run test benchmark clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m mirrorgan_jax.main --config $(CONFIG) --workdir $(WORKDIR)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) .pytest_cache
