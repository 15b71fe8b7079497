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
	$(PY) -m pip install --quiet -e '.[dev,detect,track]'
	@rm -f $(VENV)/.adlab-installed-*
	@touch $@

# Debian packages: Fashion-MNIST (real data, offline), Chromium (the HTML report's browser test) and
# pdflatex with booktabs (the test that compiles report.tex).
# Only root can apt-get; others are told what is missing (the tests that need it are skipped).
data:
	@missing=""; \
	[ -f $(FMNIST) ] || missing="$$missing dataset-fashion-mnist"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v pdflatex >/dev/null || missing="$$missing texlive-latex-base texlive-latex-recommended"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:$$missing"; \
		(apt-get install -y -qq $$missing >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null)) || \
		echo "warning: could not install$$missing"; \
	else \
		echo "note: missing Debian packages:$$missing (sudo apt-get install$$missing)"; \
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
