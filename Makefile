# Two commands for a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test repro-check check timing ablation

# (Re)install when the dependency pins change; constraints.txt pins every transitive package.
# A run needs the runtime only; the tests add pytest, torchao (the quantization reference), Ray, and the
# interop extra (Stable-Baselines3, onnx, onnxruntime: the brought parents and the exported child).
$(VENV)/.runtime: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,ray,interop]'
	touch $@

run: $(VENV)/.runtime
	$(BIN)/dvc repro
	$(BIN)/recomb timing

test: $(VENV)/.installed
	$(BIN)/python -m pytest

# Two cold runs must agree: rebuild from scratch and compare with the committed lock; when they do not,
# `recomb lock-diff` names the first stage whose outputs differ and how this machine differs from the lock's.
repro-check: $(VENV)/.runtime
	$(BIN)/dvc repro --force
	$(BIN)/recomb lock-diff

# Every quality gate of the last `dvc repro` (data/reports/pipeline.json) must have passed.
check: $(VENV)/.runtime
	$(BIN)/recomb check

# This machine's latencies (wall-clock, never hashed): data/reports/latest/timing.md
timing: $(VENV)/.runtime
	$(BIN)/recomb timing

# Conditions × seeds (params.yaml `ablation`): its own pipeline file, so `make run` and `dvc exp run` never pay for it.
ablation: $(VENV)/.runtime
	$(BIN)/dvc repro ablation/dvc.yaml

# Mutation testing of the code that chooses, gates and reports (issue 20; not part of `make test` or .ci/run):
# mutmut (pyproject.toml [tool.mutmut]) on 2 processes against the fast unit tests only, stopped after 17 min;
# prints the kill rate per module and every surviving mutant (equivalent ones: tests/mutants_allowed.txt).
.PHONY: mutants
mutants: $(VENV)/.installed
	$(BIN)/python benchmarks/mutants.py --workers 2 --minutes 17
