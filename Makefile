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

# The main job: DrQ(eps)-Rainbow (base) on MinAtar Space Invaders, 20k agent steps at replay ratio 2 (~10 min on a
# 2-core CPU; one thread, since two stall whenever anything else uses a core), evaluated every 5k steps; then its
# learning curve beside a random policy's score. Each call makes a new run directory under runs/.
DEMO_RUN := runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: install
	$(VENV)/bin/plastic train --env minatar:space_invaders --method base --steps 20000 --threads 1 \
		--set eval_every=5000 --run-dir $(DEMO_RUN)
	$(VENV)/bin/plastic report $(DEMO_RUN) --out $(DEMO_RUN)/report --reps 200 > /dev/null
	@echo "learning curve: $(DEMO_RUN)/report/figures/learning_curves.png (report: $(DEMO_RUN)/report)"

test: install
	$(PY) -m pytest -q -n 2

test-all: install
	$(PY) -m pytest -q -n 2 -m ""

bench: install
	$(PY) benchmarks/update_speed.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
