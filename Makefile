# Two commands from a fresh clone: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= .cache/demo

.PHONY: demo test test-gpu gpu-check browser pacs bench bench-quick bench-runtimes lint format clean readme-examples

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,onnx]'
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO_DIR)

test: $(STAMP) browser pacs
	$(PY) -m pytest -q

# Debian's chromium + chromium-driver for the end-to-end browser test of `cxr-fast serve`
# (tests/serve/test_browser.py: skipped without them, a failure under CI=true).
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif ! command -v apt-get >/dev/null; then \
	  echo "note: no apt-get to install chromium: the browser test will be skipped"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian chromium + chromium-driver for the browser test"; \
	  apt-get update -qq && $(APT_INSTALL) chromium chromium-driver >/dev/null; \
	elif sudo -n true 2>/dev/null; then \
	  echo "installing Debian chromium + chromium-driver for the browser test (sudo)"; \
	  sudo apt-get update -qq && sudo $(APT_INSTALL) chromium chromium-driver >/dev/null; \
	else \
	  echo "note: installing chromium needs root or sudo: the browser test will be skipped"; \
	fi

# Debian's orthanc + orthanc-dicomweb (a real PACS with DICOMweb) and dcmtk (storescu, echoscu)
# for the hospital-network tests (tests/network/: skipped without them, a failure under CI=true).
# The tests start their own Orthanc; the packaged service, which would listen on every
# interface, is stopped and disabled right after it is installed.
PACS_PACKAGES := orthanc orthanc-dicomweb dcmtk
pacs:
	@if command -v Orthanc >/dev/null && command -v storescu >/dev/null \
	  && [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then :; \
	elif ! command -v apt-get >/dev/null; then \
	  echo "note: no apt-get to install Orthanc: the PACS tests will be skipped"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian $(PACS_PACKAGES) for the PACS tests"; \
	  apt-get update -qq && $(APT_INSTALL) $(PACS_PACKAGES) >/dev/null \
	  && { systemctl disable --now orthanc >/dev/null 2>&1 || true; }; \
	elif sudo -n true 2>/dev/null; then \
	  echo "installing Debian $(PACS_PACKAGES) for the PACS tests (sudo)"; \
	  sudo apt-get update -qq && sudo $(APT_INSTALL) $(PACS_PACKAGES) >/dev/null \
	  && { sudo systemctl disable --now orthanc >/dev/null 2>&1 || true; }; \
	else \
	  echo "note: installing Orthanc needs root or sudo: the PACS tests will be skipped"; \
	fi

# On a GPU host whose Python already has torch (no registry there): make test-gpu PY=python3
# Installs the `trt` extra (torch-tensorrt) when it can, pinned to the installed torch so pip
# never swaps torch; without it the TensorRT tests are skipped. docs/gpu.md lists the tests.
TORCH_VERSION = $(PY) -c "import torch; print(torch.__version__.split('+')[0])"
test-gpu:
	$(if $(filter $(VENV)/bin/python,$(PY)),$(MAKE) $(STAMP))
	@$(PY) -c "import torch_tensorrt" 2>/dev/null || \
	  $(PY) -m pip install --quiet torch-tensorrt "torch==$$($(TORCH_VERSION))" || \
	  echo "note: could not install torch-tensorrt: the TensorRT tests will be skipped"
	$(PY) -m pytest -q -m gpu

# One check of a CUDA host (scripts/gpu_check.py): gpu tests, DALI GPU decode, AMP training,
# TensorRT export + check, a score run, one table of images/s; what is missing is skipped.
# Runs with a Python that has only torch: make gpu-check PY=python3
gpu-check:
	$(if $(filter $(VENV)/bin/python,$(PY)),$(MAKE) $(STAMP))
	$(PY) scripts/gpu_check.py

bench: $(STAMP)
	$(PY) -m bench.throughput

bench-quick: $(STAMP)
	$(PY) -m bench.throughput --quick

# The model alone on every CPU runtime (bench/model_speed.py, docs/benchmarks.md): cxr-fast's
# int8 exports beside OpenVINO and torchao PT2E, which the `bench` extra installs (here only,
# not for `make test`). RUNS: trained run folders; ACCURACY: a labelled folder (optional).
RUNS ?=
ACCURACY ?=
bench-runtimes: $(STAMP)
	test -n "$(RUNS)" || { echo "usage: make bench-runtimes RUNS='RUN [RUN ...]' [ACCURACY=DIR]"; exit 2; }
	$(PY) -m pip install --quiet -e '.[onnx,bench]'
	$(PY) -m bench.model_speed $(RUNS) --sizes 128 224 $(if $(ACCURACY),--accuracy $(ACCURACY))

# Run the README's marked examples (<!-- example -->) on the demo run and write their output
# back, so the docs show what the commands print today (scripts/readme_examples.py).
readme-examples: $(STAMP)
	test -f $(DEMO_DIR)/run/model.pt || $(MAKE) demo
	$(PY) scripts/readme_examples.py README.md

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf .cache build *.egg-info
