# adlab: `make demo` and `make test` do all the set-up on a fresh machine.
# VENV can point outside the clone (CI caches it there, keyed by pyproject.toml).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.adlab-installed-$(shell sha256sum pyproject.toml | cut -c1-16)
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data test test-slow test-all demo bench clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,detect]'
	@rm -f $(VENV)/.adlab-installed-*
	@touch $@

# Fashion-MNIST from Debian (offline, real data). Only root can apt-get; others are told how.
data:
	@if [ -f $(FMNIST) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) || \
		echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST configs will download with torchvision"; \
	else \
		echo "note: Fashion-MNIST not found; run 'sudo apt-get install dataset-fashion-mnist' (or let torchvision download it)"; \
	fi

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

test-all: setup
	$(PY) -m pytest -q -m 'slow or not slow'

demo: setup
	$(VENV)/bin/adlab demo --quick --out runs/demo

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf runs .pytest_cache
