# pseudolabel: make setup | test | demo | round | test-slow | lock   (targets and paths are a contract)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
EXP ?= demo
ROUNDS ?= 2
N ?= 0
ARGS ?=
SWEEP ?= grid

.PHONY: setup lock test test-slow demo round synth sweep export review-import report clean-demo

# exact versions from requirements.lock (make lock rewrites it from pyproject's ranges); pip check: nothing missing
setup:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$$(grep '^pip==' requirements.lock)"
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check

# re-resolve pyproject's ranges (newest allowed versions) into requirements.lock; then make setup && make test
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --dry-run --ignore-installed --quiet --report .lock-report.json -e '.[dev]'
	$(PY) tools/lock_from_report.py .lock-report.json requirements.lock "$$($(PY) -m pip --version | cut -d' ' -f2)"
	rm -f .lock-report.json

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

# make review-import EXP=<exp> FROM=<export file or folder> [FORMAT=yolo|cvat|labelstudio|fiftyone] [N=<round>]:
# the reviewer's corrections -> runs/<exp>/review/reviewed.json, ground truth for every later round
review-import:
	$(PY) -m pseudolabel stage=review_import exp=$(EXP) 'review.path="$(FROM)"' $(if $(FORMAT),review.format=$(FORMAT)) $(if $(filter command line environment,$(origin N)),review.round=$(N)) $(ARGS)

# make report EXP=<exp>: runs/<exp>/report.html, a static dashboard (open it from disk)
report:
	$(PY) -m pseudolabel stage=report exp=$(EXP) $(ARGS)

sweep:
	$(PY) -m pseudolabel hparams_search=$(SWEEP) exp=$(EXP) $(ARGS)

clean-demo:
	rm -rf runs/$(EXP)
