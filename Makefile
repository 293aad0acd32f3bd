# resnet-exp: `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# pytest-xdist workers: one per core of a 2-core CI machine; each test file runs on one worker
TEST_WORKERS ?= -n 2 --dist loadfile

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast test-combos test-engines test-fuzz test-under-load tensorboard lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the package with its dev extra (no-op when up to date)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install ## install, then the default job: ResNet-20 on the embedded digits (~1 min on CPU)
	$(PY) -m resnet_exp $(ARGS)

test: install ## install, then the whole test suite (what CI runs)
	$(PY) -m pytest $(TEST_WORKERS) $(ARGS)

test-fast: install ## the tests that start no training run, sweep or compile (before a commit)
	$(PY) -m pytest $(TEST_WORKERS) -m "not slow" $(ARGS)

test-combos: install ## every option of every group, pairwise: 113 one-epoch runs (tests/combos/; ~7 min)
	$(PY) -m pytest -n 2 --dist worksteal tests/combos $(ARGS)

test-engines: install ## SLURM, DDP, Optuna on PostgreSQL, an MLflow server, each started here (root; ~8 min)
	PY=$(PY) bash scripts/engines.sh $(TEST_WORKERS) $(ARGS)

test-fuzz: install ## 200 random values for the config's keys (tests/test_fuzz.py; about 8 min)
	FUZZ_EXAMPLES=200 $(PY) -m pytest $(TEST_WORKERS) tests/test_fuzz.py $(ARGS)

test-under-load: install ## the whole suite beside 4 busy processes per core, as on shared CI
	$(PY) scripts/stress_cpu.py --per-core 4 -- $(PY) -m pytest $(TEST_WORKERS) $(ARGS)

# TensorBoard opens the first two tag groups by name (lr, test); a pinnedCards link puts cards on top
tensorboard: install ## serve the runs and sweeps under outputs/ (not outputs/debug/) on :6006
	@echo "Curves first (train/val loss and accuracy pinned): http://127.0.0.1:6006/?pinnedCards=%5B%7B%22plugin%22%3A%22scalars%22%2C%22tag%22%3A%22train%2Floss%22%7D%2C%7B%22plugin%22%3A%22scalars%22%2C%22tag%22%3A%22val%2Floss%22%7D%2C%7B%22plugin%22%3A%22scalars%22%2C%22tag%22%3A%22train%2Facc%22%7D%2C%7B%22plugin%22%3A%22scalars%22%2C%22tag%22%3A%22val%2Facc%22%7D%5D#timeseries"
	$(VENV)/bin/tensorboard --logdir_spec runs:outputs/runs,multirun:outputs/multirun --host 127.0.0.1

lint: install ## ruff over the package, tests and scripts
	$(VENV)/bin/ruff check resnet_exp hydra_plugins tests scripts

bench: install ## framework vs bare-loop throughput, data path, auto-augment, start-up (minutes)
	$(PY) scripts/bench.py $(ARGS)
	OMP_NUM_THREADS=1 $(PY) scripts/bench_auto_augment.py

clean: ## remove run outputs and caches (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
