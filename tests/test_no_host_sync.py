"""Value checks must not sync the host with the device on CUDA (item 5 of issue 10).

A host read of a CUDA tensor (``bool(t)``, ``t.item()``, ``nonzero``) stalls the stream and breaks
CUDA-graph capture. Without a GPU this is tested on fake CUDA tensors (FakeTensorMode): they carry no
data, so any host read raises DataDependentOutputException, while ``torch._assert_async`` (the
device-side check) passes. The ops' bodies are called directly (``_init_fn``): under the fake mode the
custom op itself would dispatch to its fake implementation and skip the checks. On CPU the same checks
still raise ValueError (tests/test_errors.py, tests/test_offsets.py).
"""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import zoomkern.ops.offsets as offsets_op
import zoomkern.ops.softmax as softmax_op
from zoomkern import backends


class _StubSoftmax:
    """Stands in for the CUDA kernels: shapes only (fake tensors cannot run Triton)."""

    @staticmethod
    def softmax_fwd(x, mask, temperature, smoothing):
        return torch.empty_like(x), x.new_empty(x.shape[:1])


def test_spatial_softmax_mask_check_does_not_sync_on_cuda(monkeypatch):
    monkeypatch.setattr(backends, "select", lambda op, device: ("stub", _StubSoftmax))
    with FakeTensorMode(allow_non_fake_inputs=True):
        logits = torch.empty(2, 5, 7, device="cuda")
        mask = torch.ones(2, 5, 7, dtype=torch.bool, device="cuda")
        p, ent = softmax_op._spatial_softmax._init_fn(logits, 1.0, 0.1, mask)
    assert p.shape == logits.shape and ent.shape == (2,)


def test_cells_to_offsets_range_check_does_not_sync_on_cuda():
    with FakeTensorMode(allow_non_fake_inputs=True):
        idx = torch.zeros(3, 4, dtype=torch.int64, device="cuda")
        out = offsets_op._cells_to_offsets._init_fn(idx, [8, 9], [800, 900], [50, 50])
    assert out.shape == (3, 4, 2)


def test_cpu_checks_still_raise_value_error():
    import zoomkern as zk

    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="no True position for sample 1"):
        zk.spatial_softmax(torch.randn(2, 3, 4), mask=mask)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 72\)"):
        zk.cells_to_offsets(torch.tensor([[72]]), (8, 9), (800, 900), (50, 50))
