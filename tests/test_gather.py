import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import zoomkern as zk
from zoomkern.reference import gather_patches_ref

pytestmark = pytest.mark.usefixtures("each_backend")


def _slices(image, offsets, ph, pw, layout="CHW"):
    """Independent oracle: pad, then slice each patch in a Python loop."""
    img = image if layout == "CHW" else image.permute(0, 3, 1, 2)
    B, C, H, W = img.shape
    out = torch.zeros(B, offsets.shape[1], C, ph, pw, dtype=img.dtype)
    for b in range(B):
        for i, (y, x) in enumerate(offsets[b].tolist()):
            y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + ph, H), min(x + pw, W)
            if y1 > y0 and x1 > x0:
                out[b, i, :, y0 - y : y1 - y, x0 - x : x1 - x] = img[b, :, y0:y1, x0:x1]
    return out


BORDER_OFFSETS = [[-3, -3], [-3, 10], [10, -3], [25, 28], [27, 27], [-10, -10], [40, 5], [0, 0], [5, 7]]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("ph,pw", [(1, 1), (5, 7), (31, 30)])
def test_matches_slicing_on_every_border(dtype, layout, ph, pw):
    g = torch.Generator().manual_seed(0)
    shape = (2, 3, 29, 30) if layout == "CHW" else (2, 29, 30, 3)
    image = torch.randint(0, 250, shape, generator=g).to(dtype)
    offsets = torch.tensor([BORDER_OFFSETS, BORDER_OFFSETS[::-1]])
    out = zk.gather_patches(image, offsets, (ph, pw), layout=layout)
    assert out.dtype == dtype and out.shape == (2, 9, 3, ph, pw) and out.is_contiguous()
    assert torch.equal(out, _slices(image, offsets, ph, pw, layout))
    assert torch.equal(out, gather_patches_ref(image, offsets, (ph, pw), layout=layout))


def test_non_contiguous_image_and_normalisation():
    base = torch.randint(0, 255, (2, 40, 50, 3), dtype=torch.uint8)
    image = base.permute(0, 3, 2, 1)  # (2, 3, 50, 40), strided
    offsets = torch.tensor([[[-2, 3], [45, 35]], [[10, 10], [0, 0]]])
    mean, std = [10.0, 20.0, 30.0], [2.0, 4.0, 8.0]
    out = zk.gather_patches(image, offsets, (8, 9), mean=mean, std=std)
    expect = (_slices(image, offsets, 8, 9).float() - torch.tensor(mean).view(1, 1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 1, 3, 1, 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expect)


def test_numpy_memmap_source(tmp_path):
    arr = np.lib.format.open_memmap(tmp_path / "img.npy", mode="w+", dtype=np.uint8, shape=(1, 1, 64, 64))
    arr[:] = np.arange(64 * 64, dtype=np.uint32).reshape(1, 1, 64, 64) % 251
    arr.flush()
    ro = np.load(tmp_path / "img.npy", mmap_mode="r")
    offsets = torch.tensor([[[3, 4], [60, 60]]])
    out = zk.gather_patches(ro, offsets, (5, 5))
    assert torch.equal(out, _slices(torch.from_numpy(np.array(ro)), offsets, 5, 5))


@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(1, 20),
    st.integers(1, 20),
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(0, 2**31 - 1),
)
def test_property_equals_slicing(B, C, H, W, ph, pw, seed):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(B, C, H, W, generator=g, dtype=torch.float64)
    offsets = torch.stack(
        [
            torch.randint(-ph - 2, H + 2, (B, 5), generator=g),
            torch.randint(-pw - 2, W + 2, (B, 5), generator=g),
        ],
        -1,
    )
    assert torch.equal(zk.gather_patches(image, offsets, (ph, pw)), _slices(image, offsets, ph, pw))


def test_gradcheck_float64_with_overlaps_and_borders():
    image = torch.rand(2, 2, 7, 8, dtype=torch.float64, requires_grad=True)
    offsets = torch.tensor([[[0, 0], [1, 1], [-2, 5]], [[5, 6], [5, 6], [3, -1]]])
    assert torch.autograd.gradcheck(lambda x: zk.gather_patches(x, offsets, (3, 4), std=[2.0]), (image,))
    hwc = image.detach().permute(0, 2, 3, 1).contiguous().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: zk.gather_patches(x, offsets, (3, 4), layout="HWC"), (hwc,))
