"""pytest-benchmark suite: zoomkern against the baseline a user would write today, side by side.

`pytest benchmarks/` measures; `pytest benchmarks/ --benchmark-disable` is the CI smoke run (each case
runs once on small inputs, checking that every side agrees). Ratios land in each row's extra_info.
"""

import os
import sys

import pytest
import torch

# The bench modules and report.py share _util.py; make it importable whatever pytest's import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped without one")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
