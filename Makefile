# The two commands first: `make demo` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint fmt clean package bench help

help:
	@echo "make demo     run the scenario on the local emulator + SQLite"
	@echo "make test     run the test suite (PostgreSQL/MariaDB when their URLs are set)"
	@echo "make lint     ruff, mypy --strict, vermin (Python 3.10)"
	@echo "make package  build per-function bundles under build/ (FUNCTIONS=\"auto_start sweep\": some)"
	@echo "make bench    run the quick benchmark"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tools.demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check shared functions tools tests
	$(PY) -m mypy shared functions tools
	$(VENV)/bin/vermin --no-tips --violations -t=3.10- --eval-annotations --backport dataclasses shared functions tools

# s.yaml's pre-deploy hooks call `make package FUNCTIONS=<name>`: from a fresh shell (no venv
# activated, no `python` on PATH) this builds .venv first and packages with its interpreter.
package: $(STAMP)
	$(PY) -m tools.package $(FUNCTIONS)

bench: $(STAMP)
	$(PY) -m tools.bench --quick

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
