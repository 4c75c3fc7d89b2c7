"""The CUDA sources were compiled into zoomkern._C when the machine could build them.

`make test` builds the extension with nvcc when a CUDA toolkit and a CUDA build of torch are present.
This test fails (not skips) when that should have happened but did not, so a broken CUDA build can't
hide behind a green CPU run. Set ZOOMKERN_NO_CUDA=1 to opt out deliberately.
"""

import os
import shutil

import pytest
import torch

from zoomkern import backends


def _should_have_cuda():
    if os.environ.get("ZOOMKERN_NO_CUDA") == "1" or os.environ.get("ZOOMKERN_NO_EXT") == "1":
        return False, "ZOOMKERN_NO_CUDA/ZOOMKERN_NO_EXT set"
    if torch.version.cuda is None:
        return False, "torch is a CPU-only build"
    if shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"):
        return False, "no CUDA toolkit (nvcc) on this machine"
    return True, ""


def test_extension_has_cuda_kernels_when_buildable():
    should, why = _should_have_cuda()
    if not should:
        pytest.skip(f"CUDA build not expected here: {why}")
    assert backends._ext()[0] is not None, backends._ext()[1]
    assert backends.ext_has_cuda(), (
        "nvcc and a CUDA torch are present but zoomkern._C has no CUDA gather kernel"
    )


def test_cuda_backend_reason_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present; benchmarks/ -m gpu covers it")
    assert "not CUDA" in backends.why_not("cuda", "gather", torch.device("cpu"))
