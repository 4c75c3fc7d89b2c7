import os

import pytest
from hypothesis import settings

# Derandomised in CI so a red run reproduces.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def _cpu_backends():
    from zoomkern import backends

    names = ["reference"]
    if backends._ext()[0] is not None:
        names.append("cpu")
    return names


@pytest.fixture(params=_cpu_backends())
def each_backend(request, monkeypatch):
    """Run the test once per backend usable on CPU tensors (modules opt in with usefixtures)."""
    monkeypatch.setenv("ZOOMKERN_BACKEND", request.param)
    return request.param


@pytest.fixture(params=["auto", "avx2", "default"])
def each_cpu_capability(request, monkeypatch):
    """Run the test under each build of the SIMD kernels (csrc/**/*_cpu_vec.cpp): "auto" (the best the CPU
    has: AVX-512 for the ops built for it, else AVX2), "avx2" (AVX2 at most) and "default" (the generic
    build). The C++ side reads ZOOMKERN_CPU_CAPABILITY per call."""
    if request.param == "auto":
        monkeypatch.delenv("ZOOMKERN_CPU_CAPABILITY", raising=False)
    else:
        monkeypatch.setenv("ZOOMKERN_CPU_CAPABILITY", request.param)
    return request.param
