# Two commands do all the set-up on a fresh machine:
#   make demo   - builds the environment from nothing and runs the graph on a generated driving log
#   make test   - builds the environment from nothing and runs the tests (.ci/run calls this)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export LATENTVLA_VENV := $(abspath $(VENV))
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export SDL_VIDEODRIVER := offscreen
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test test-all train evaluate bench colcon-check mutation clean

setup:
	bash scripts/bootstrap.sh

demo: setup
	$(PY) -m latentvla_ros.cli demo --out artifacts/demo

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

train: setup
	$(PY) -m latentvla_ros.cli train all --out artifacts/train --data artifacts/train/data --export-to checkpoints/edge --threads 2 --data-preset balanced --data-seeds 12 --epochs-scale 0.25 --write-docs

evaluate: setup
	$(PY) -m latentvla_ros.cli evaluate --out artifacts/eval

bench: setup
	$(PY) -m latentvla_ros.cli bench --out artifacts/bench

colcon-check: setup
	bash scripts/colcon_check.sh

# mutation score of the core modules on their fast tests -> docs/testing.md, docs/testing.json
# (one module: make mutation MODULES=latentvla_ros/core/fallback.py; takes long, not part of CI)
mutation: setup
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	$(PY) scripts/mutation.py $(if $(MODULES),--modules $(MODULES))

clean:
	rm -rf build install log artifacts
