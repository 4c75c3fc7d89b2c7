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
