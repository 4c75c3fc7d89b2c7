"""glibc allocator tuning for training, applied before torch is imported.

This module imports nothing but the standard library: ``zoomkern/__init__.py`` runs it first, before its
own ``import torch``, because torch reads THP_MEM_ALLOC_ENABLE once, at its first CPU allocation. The
package's import is the only place that runs early enough for the ``zoomkern train`` console script and
``python -m zoomkern train`` (both import the zoomkern package before any of its code runs).
"""

from __future__ import annotations

import os
import sys

# True once tune_cpu_allocator ran, and whether torch was still unimported then (tests check it).
TUNED: bool = False
BEFORE_TORCH: bool = False


def is_train_command(argv: list[str]) -> bool:
    """True for ``zoomkern train ...`` and ``python -m zoomkern train ...`` as the process sees them
    while the package is imported (``-m`` sets argv[0] to "-m" until the module is found)."""
    if len(argv) < 2 or argv[1] != "train":
        return False
    name = os.path.splitext(os.path.basename(argv[0]))[0]
    return argv[0] == "-m" or name in ("zoomkern", "zoomkern-script")


def tune_cpu_allocator() -> None:
    """Keep freed training buffers mapped instead of returning them to the kernel after every step.

    Each step allocates and frees tile views, patches and activations of many MB; with glibc's defaults
    they are mmap'ed and unmapped every time and the page faults took 40% of the CPU time (traffic
    signs). Transparent huge pages for torch's CPU allocator plus no mmap/trim below 1 GiB: 129 -> 47
    ms of system time per image there, 33.5 -> 21.5 ms/image at --preset paper
    (docs/experiments/allocator.md). It must run before torch allocates (THP_MEM_ALLOC_ENABLE is read
    once). ZOOMKERN_DEFAULT_MALLOC=1 keeps the defaults.
    """
    global TUNED, BEFORE_TORCH
    if TUNED or os.environ.get("ZOOMKERN_DEFAULT_MALLOC") == "1" or not sys.platform.startswith("linux"):
        return
    TUNED, BEFORE_TORCH = True, "torch" not in sys.modules
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # not glibc (musl): the defaults stay
        pass


def tune_for_command(argv: list[str]) -> None:
    if is_train_command(argv):
        tune_cpu_allocator()
