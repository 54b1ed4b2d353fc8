# Two commands from a fresh clone: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= .cache/demo

.PHONY: demo test test-gpu gpu-check gpu-bundle browser pacs bench bench-quick bench-runtimes lint format clean readme-examples

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
# Runs the test files that hold gpu-marked tests (only they are collected: the others import
# what such a host lacks). TRT=1 first installs the `trt` extra (torch-tensorrt, pinned to the
# installed torch so pip never swaps torch); without it the TensorRT tests are skipped.
GPU_TEST_FILES = $(shell grep -rl "mark.gpu" tests --include='test_*.py' | sort)
TORCH_VERSION = $(PY) -c "import torch; print(torch.__version__.split('+')[0])"
TRT ?=
test-gpu:
	$(if $(filter $(VENV)/bin/python,$(PY)),$(MAKE) $(STAMP))
	$(if $(TRT),@$(PY) -c "import torch_tensorrt" 2>/dev/null || \
	  $(PY) -m pip install --quiet torch-tensorrt "torch==$$($(TORCH_VERSION))" || \
	  echo "note: could not install torch-tensorrt: the TensorRT tests will be skipped")
	$(PY) -m pytest -q -m gpu $(GPU_TEST_FILES)

# The wheels scripts/gpu_check.py needs on a GPU host without a registry (cxr-fast, pydicom;
# cp312 manylinux x86_64), in build/gpu-bundle/; the script fails above 48 MiB. docs/gpu.md.
gpu-bundle:
	$(if $(filter $(VENV)/bin/python,$(PY)),$(MAKE) $(STAMP))
	$(PY) scripts/gpu_bundle.py --out build/gpu-bundle

# One check of a CUDA host (scripts/gpu_check.py, docs/gpu.md): every step in its own process
# with a timeout, 8 minutes in all; OUT/gpu_check.json and OUT/gpu_check.md. Runs with the
# host's Python and build/gpu-bundle: make gpu-check PY=python3 OUT=DIR
OUT ?= .cache/gpu-check
gpu-check:
	$(if $(filter $(VENV)/bin/python,$(PY)),$(MAKE) $(STAMP))
	$(PY) scripts/gpu_check.py --out $(OUT)

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
