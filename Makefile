# pseudolabel: make setup | test | demo | round | test-slow   (targets and paths are a contract)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
EXP ?= demo
ROUNDS ?= 2
N ?= 0
ARGS ?=

.PHONY: setup test test-slow demo round synth clean-demo

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

clean-demo:
	rm -rf runs/$(EXP)
