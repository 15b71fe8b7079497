# adlab: `make demo` and `make test` do all the set-up on a fresh machine.
# VENV can point outside the clone (CI caches it there, keyed by pyproject.toml and constraints.txt).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.adlab-installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data lint test test-slow test-all demo bench mutation clean

setup: $(STAMP) data

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,detect,track,cluster,timm]'
	@rm -f $(VENV)/.adlab-installed-*
	@touch $@

# Debian packages: Fashion-MNIST (real data, offline), Chromium (the HTML report's browser test),
# pdflatex with booktabs (the test that compiles report.tex), and a one-machine cluster for the
# cluster tests (tests/cluster: SLURM with munge, a PostgreSQL server; the tests start and stop them).
# Only root can apt-get; others are told what is missing (the tests that need it are skipped).
data:
	@missing=""; \
	[ -f $(FMNIST) ] || missing="$$missing dataset-fashion-mnist"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v pdflatex >/dev/null || missing="$$missing texlive-latex-base texlive-latex-recommended"; \
	command -v slurmctld >/dev/null && command -v slurmd >/dev/null || missing="$$missing slurm-wlm"; \
	command -v munged >/dev/null || missing="$$missing munge"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:$$missing"; \
		(apt-get install -y -qq $$missing >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null)) || \
		echo "warning: could not install$$missing"; \
	else \
		echo "note: missing Debian packages:$$missing (sudo apt-get install$$missing)"; \
	fi

# The code's own rules: ruff (lint and format), mypy (types; every task checked against the Task protocol),
# import-linter (the layers in pyproject.toml). Part of `make test`.
lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: setup lint
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

test-all: setup
	$(PY) -m pytest -q -m 'slow or not slow'

# Mutation testing of the modules that guard users (docs/testing.md): mutmut changes one thing at a time
# (<= into <, a rule dropped, ...) and runs the fast tests that call the changed function; a mutant no test
# kills is a hole. One module: make mutation MUTANTS='adlab.names.*'. Results are kept in mutants/.
MUTANTS ?= 'adlab.ownership.*' 'adlab.names.*' 'adlab.study.stats.*' 'adlab.detection.kitti.*' \
	'adlab.detection.tools.x_crop_box*' $(CIFAR_MUTANTS) $(QUEUE_MUTANTS)
# the CIFAR unpickler: its allowed globals, its checked array and size check, _unpickle, _read_batch
CIFAR_MUTANTS := 'adlab.data.cifar.x*_BatchUnpickler*' 'adlab.data.cifar.x*_CheckedArray*' \
	'adlab.data.cifar.x__check_size*' 'adlab.data.cifar.x__unpickle*' 'adlab.data.cifar.x__read_batch*'
# the queue: claiming a run, requeueing a dead worker's, retries, attempts, which runs are finished/missing
QUEUE_MUTANTS := 'adlab.study.queue.x_claim*' 'adlab.study.queue.x_requeue_stale*' 'adlab.study.queue.x_retry_failed*' \
	'adlab.study.queue.x__attempt*' 'adlab.study.queue.x_latest_attempts*' 'adlab.study.queue.x_unqueued*'

mutation: setup
	$(VENV)/bin/mutmut run $(MUTANTS)
	@$(VENV)/bin/mutmut results --all true | awk -F': ' '{ n = $$1; gsub(/^ +/, "", n); m = n; sub(/\.x[^.]*$$/, "", m); \
		t[m]++; if ($$2 == "killed" || $$2 == "timeout") k[m]++; if ($$2 == "not checked") u[m]++ } \
		END { for (m in t) if (t[m] > u[m]) printf "%-24s %4d of %4d mutants killed (%.1f%%)\n", m, k[m], t[m] - u[m], \
		100 * k[m] / (t[m] - u[m]) }'
	@echo "survivors: $(VENV)/bin/mutmut results; one of them: $(VENV)/bin/mutmut show NAME"

demo: setup
	$(VENV)/bin/adlab demo --quick --out runs/demo

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf runs .pytest_cache mutants
