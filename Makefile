# Set-up and entry points. Each target installs what it needs by itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-stamp

.PHONY: venv build test bench scaling demo lint info clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# The extension: C++ CPU kernels always; CUDA kernels when nvcc and a CUDA torch exist (setup.py finds
# the toolkit; ZOOMKERN_NO_CUDA=1 skips it, ZOOMKERN_NO_EXT=1 builds nothing native). The editable install
# also puts the `zoomkern` console command into $(BIN).
build: $(STAMP)
	@echo "building zoomkern._C (C++ and, where nvcc exists, CUDA: a few minutes)..."
	$(BIN)/pip install -v --no-build-isolation --no-deps -e . > $(VENV)/build.log 2>&1 || (tail -40 $(VENV)/build.log; exit 1)
	grep "zoomkern setup:" $(VENV)/build.log | sort -u
	$(BIN)/python -m zoomkern.info | head -3

test: build
	$(BIN)/python -m pytest tests/ -q -p no:cacheprovider
	$(BIN)/python -m pytest benchmarks/ -q --benchmark-disable -p no:cacheprovider

# Results go to pytest-benchmark's own storage (.benchmarks/, machine and commit included):
# compare two runs with `pytest-benchmark compare`, plot the scaling rows with python/plot_benchmarks.py.
bench: build
	$(BIN)/python -m pytest benchmarks/ -q --benchmark-columns=mean,stddev,rounds --benchmark-sort=name --benchmark-autosave

# The whole scaling sweep, sides 1000-100000 (writes ~GBs of cached TIFFs on first use; long on a CPU).
scaling: build
	$(BIN)/python -m pytest benchmarks/test_bench_scaling.py -q --scaling-sides all --benchmark-autosave
	$(BIN)/python python/plot_benchmarks.py --out docs/img/scaling.png --table

demo: build
	$(BIN)/zoomkern train --preset demo

lint: $(STAMP)
	$(BIN)/ruff check zoomkern tests benchmarks python setup.py

info: build
	$(BIN)/zoomkern info

clean:
	rm -rf build *.egg-info zoomkern/*.so
