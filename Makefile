# One command sets up and runs the main job (`make demo`), one sets up and runs the tests (`make test`).
# Both create ./.venv on first use. torch is pinned here (a CPU wheel) because an unpinned torch pulls GBs of CUDA
# packages; the package itself only asks for torch>=2.4.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
EXTRAS ?= dev

.PHONY: install demo test test-all bench clean

install: $(VENV)/.installed-$(EXTRAS)

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# The main job: PLASTIC on MinAtar Breakout, 10k agent steps at replay ratio 2 (~5-8 min on 2 CPU cores), then the
# final evaluation and a results summary. Each call makes a new run directory under runs/.
demo: install
	$(VENV)/bin/plastic train --env minatar:breakout --preset plastic --steps 10000 --eval-episodes 20 \
		--run-dir runs/demo-$$(date +%Y%m%d-%H%M%S)

test: install
	$(PY) -m pytest -q -n 2

test-all: install
	$(PY) -m pytest -q -n 2 -m ""

bench: install
	$(PY) benchmarks/update_speed.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
