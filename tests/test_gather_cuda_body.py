"""The CUDA gather's per-thread body (csrc/gather/gather_body.h), run on the CPU over the CUDA grid."""

import pytest
import torch

import zoomkern  # noqa: F401
from zoomkern import backends
from zoomkern.reference import gather_patches_ref

if backends._ext()[0] is None or not hasattr(torch.ops.zoomkern_C, "gather_emulate_cuda_grid"):
    pytest.skip("zoomkern._C is not built", allow_module_level=True)

OFFS = [
    [-3, -3],
    [-3, 10],
    [10, -3],
    [25, 28],
    [27, 27],
    [-10, -10],
    [40, 5],
    [0, 0],
    [5, 7],
    [2**40, -(2**40)],
]


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("ph,pw", [(1, 1), (5, 33), (31, 30), (2, 64)])
@pytest.mark.parametrize("n_warps", [1, 3, 1000])
def test_emulated_cuda_grid_matches_reference(layout, ph, pw, n_warps):
    g = torch.Generator().manual_seed(0)
    shape = (2, 3, 29, 30) if layout == "CHW" else (2, 29, 30, 3)
    image = torch.rand(shape, generator=g)
    offsets = torch.tensor([OFFS, OFFS[::-1]])
    out = torch.ops.zoomkern_C.gather_emulate_cuda_grid(image, offsets, ph, pw, layout, n_warps)
    assert torch.equal(out, gather_patches_ref(image, offsets, (ph, pw), layout=layout))


def test_emulated_grid_on_strided_view():
    base = torch.rand(2, 40, 50, 3)
    image = base.permute(0, 3, 2, 1)  # non-contiguous (B, C, H, W)
    offsets = torch.tensor([[[-2, 3], [45, 35]], [[10, 10], [0, 0]]])
    out = torch.ops.zoomkern_C.gather_emulate_cuda_grid(image, offsets, 8, 9, "CHW", 7)
    assert torch.equal(out, gather_patches_ref(image, offsets, (8, 9)))
