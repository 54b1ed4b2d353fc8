# Two commands from a fresh clone: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= .cache/demo

.PHONY: demo test test-gpu bench bench-quick lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q

# On a GPU host whose Python already has torch (no registry there): make test-gpu PY=python3
test-gpu:
	$(if $(filter $(VENV)/bin/python,$(PY)),$(MAKE) $(STAMP))
	$(PY) -m pytest -q -m gpu

bench: $(STAMP)
	$(PY) -m bench.throughput

bench-quick: $(STAMP)
	$(PY) -m bench.throughput --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf .cache build *.egg-info
