"""Where the Triton kernel tests run, shared by tests/test_triton.py and tests/test_triton_sample.py.

Triton picks compiled or interpreted kernels when ``@triton.jit`` runs (at import of zoomkern.triton,
from TRITON_INTERPRET), so a test file never flips the variable in-process: without a GPU its
``test_interpreted_in_subprocess`` reruns the whole file with TRITON_INTERPRET=1 in a child process
(``rerun_interpreted``), where the kernels run on CPU tensors. Import this after
``pytest.importorskip("triton")``.
"""

import os
import subprocess
import sys

import pytest
import torch

import zoomkern.triton as zt

if zt.INTERPRETED:
    DEVICE = "cpu"
elif torch.cuda.is_available():
    DEVICE = "cuda"
else:
    DEVICE = None
needs_kernels = pytest.mark.skipif(
    DEVICE is None, reason="no CUDA device; covered by the interpreter subprocess"
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rerun_interpreted(path: str) -> None:
    """Run the test file ``path`` under TRITON_INTERPRET=1 in a child pytest; it must pass."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", os.path.abspath(path), "-q", "-p", "no:cacheprovider", "-x"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
