# pseudolabel: make setup | test | demo | round | test-slow   (targets and paths are a contract)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
EXP ?= demo
ROUNDS ?= 2
N ?= 0
ARGS ?=
SWEEP ?= grid

.PHONY: setup test test-slow demo round synth sweep export report clean-demo

setup:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev]'

test:
	$(PY) -m pytest

test-slow:
	$(PY) -m pytest -m slow

demo:
	$(PY) -m pseudolabel stage=demo rounds=$(ROUNDS) exp=$(EXP) $(ARGS)

round:
	$(PY) -m pseudolabel stage=round round=$(N) exp=$(EXP) $(ARGS)

synth:
	$(PY) -m pseudolabel stage=synth $(ARGS)

# make export EXP=<exp> FORMAT=yolo|cvat|labelstudio|fiftyone [N=<round>, default: latest finished]
export:
	$(PY) -m pseudolabel stage=export exp=$(EXP) export.format=$(or $(FORMAT),yolo) $(if $(filter command line environment,$(origin N)),export.round=$(N)) $(ARGS)

# make report EXP=<exp>: runs/<exp>/report.html, a static dashboard (open it from disk)
report:
	$(PY) -m pseudolabel stage=report exp=$(EXP) $(ARGS)

sweep:
	$(PY) -m pseudolabel hparams_search=$(SWEEP) exp=$(EXP) $(ARGS)

clean-demo:
	rm -rf runs/$(EXP)
