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


# ------------------------------------------------- HWC rows staged through shared memory (16-byte loads)


def _hwc(dtype, B, H, W, C, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 171, (B, H, W, C), generator=g)  # 171 is the emulator's integer poison
    return img.to(torch.int32).to(dtype) if dtype == torch.uint16 else img.to(dtype)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32, torch.float64])
@pytest.mark.parametrize("C", [2, 3, 4, 5])
def test_staged_hwc_rows_every_alignment_and_border(dtype, C):
    # 16 column offsets put the row start at every byte alignment; borders on all sides; C = 5 takes the
    # channel-row body (the staged one handles 2..4 dense channels of <= 2048-byte pixels, i.e. all here).
    image = _hwc(dtype, 2, 23, 61, C)
    offs = [[y, x] for y in (-4, 0, 9, 20) for x in range(-5, 16)] + [[3, 55], [25, 3], [2**40, -(2**40)]]
    offsets = torch.tensor([offs, offs[::-1]])
    for ph, pw in ((1, 1), (3, 17), (5, 40)):
        out = torch.ops.zoomkern_C.gather_emulate_cuda_grid(image, offsets, ph, pw, "HWC", 5)
        assert torch.equal(out, gather_patches_ref(image, offsets, (ph, pw), layout="HWC")), (ph, pw)


@pytest.mark.parametrize(
    "dtype,C,pw", [(torch.float64, 4, 150), (torch.uint8, 3, 1500), (torch.float32, 3, 400)]
)
def test_staged_rows_over_several_tiles(dtype, C, pw):
    # 2048-byte tiles: 64 float64x4 pixels, 682 uint8x3 and 170 float32x3 pixels per tile.
    image = _hwc(dtype, 1, 9, pw + 40, C, seed=1)
    offsets = torch.tensor([[[0, 0], [-2, -7], [3, 45], [1, 3]]])
    out = torch.ops.zoomkern_C.gather_emulate_cuda_grid(image, offsets, 4, pw, "HWC", 2)
    assert torch.equal(out, gather_patches_ref(image, offsets, (4, pw), layout="HWC"))
    plain = torch.ops.zoomkern_C.gather_emulate_cuda_grid(image, offsets, 4, pw, "HWC", 2, False)
    assert torch.equal(out, plain)


def test_staged_body_skips_non_dense_hwc_views():
    base = _hwc(torch.uint8, 1, 30, 40, 4)
    for view in (base[..., :3], base[:, :, ::2, 1:]):  # channel stride 1 but pixel stride != C
        offsets = torch.tensor([[[-1, -2], [5, 3], [20, 10]]])
        out = torch.ops.zoomkern_C.gather_emulate_cuda_grid(view, offsets, 6, 9, "HWC", 3)
        assert torch.equal(out, gather_patches_ref(view, offsets, (6, 9), layout="HWC"))
