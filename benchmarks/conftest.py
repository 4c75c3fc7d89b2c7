"""pytest-benchmark suite: zoomkern against the baseline a user would write today, side by side.

`pytest benchmarks/` measures; `pytest benchmarks/ --benchmark-disable` is the CI smoke run (each case
runs once on small inputs, checking that every side agrees). Ratios land in each row's extra_info, and
the run ends with a summary of zoomkern against each baseline (_summary.py). Save results with
pytest-benchmark's own storage (`--benchmark-autosave`: machine and commit included) and compare two
runs with `pytest-benchmark compare`.
"""

import os
import sys

import pytest
import torch

# The bench modules and report.py share _util.py; make it importable whatever pytest's import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _summary  # noqa: E402

_ROWS: list[dict] = []


def pytest_addoption(parser):
    g = parser.getgroup("zoomkern scaling benchmark (test_bench_scaling.py)")
    g.addoption(
        "--scaling-sides",
        default=None,
        help="image sides to run: 'all' (1000..100000) or a comma list; default 1000,2000,4000 "
        "(1000,2000 under --benchmark-disable)",
    )
    g.addoption(
        "--scaling-cache", default=None, help="folder of the cached TIFFs (~/.cache/zoomkern/scaling)"
    )
    g.addoption(
        "--scaling-cap-gib",
        default=6.0,
        type=float,
        help="address space a point may add above its idle process before it counts as out of memory",
    )
    g.addoption("--scaling-threads", default=1, type=int, help="torch threads in each point's process")
    g.addoption(
        "--scaling-batches",
        default=None,
        help="batch sizes, a comma list; default 1,8 (1 under --benchmark-disable)",
    )
    g.addoption(
        "--scaling-tiff",
        action="append",
        default=[],
        metavar="SIDE=PATH",
        help="use this existing square RGB pyramidal TIFF for that side instead of the cached one",
    )
    g.addoption(
        "--scaling-budget-min",
        default=None,
        type=float,
        help="stop starting scaling points after this many minutes; the rest are skipped, each saying so",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped without one")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    yield
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    if call.when == "call" and fixture is not None:
        r = _summary.row(fixture)
        if r is not None:
            _ROWS.append(r)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    _summary.write(terminalreporter, _ROWS)
