"""Triton kernels against the kernel-level references.

Triton picks compiled or interpreted kernels when ``@triton.jit`` runs (at import of zoomkern.triton,
from TRITON_INTERPRET), so this module never flips the variable in-process: without a GPU,
``test_interpreted_in_subprocess`` reruns this file with TRITON_INTERPRET=1 in a child process, where
the kernel tests run on CPU tensors. With a GPU they also run in-process on CUDA tensors.
tests/test_triton_compile.py builds every kernel for sm_90 without a GPU.
"""

import pytest
import torch

triton = pytest.importorskip("triton")

import zoomkern.triton as zt  # noqa: E402
from tests._tol import close  # noqa: E402
from tests._triton_env import DEVICE, needs_kernels, rerun_interpreted  # noqa: E402
from zoomkern import reference as R  # noqa: E402


def _loose_fp64(dtype, mask, smoothing):
    # reference.softmax_* computes smoothing / n_valid from an int64 mask count, which PyTorch evaluates in
    # float32; with a mask and smoothing the float64 reference is therefore only float32-accurate there.
    return dtype == torch.float64 and mask is not None and smoothing != 0


# ----------------------------------------------------------------------------- softmax

SOFTMAX_SHAPES = [(1, 1), (3, 7), (513, 8), (2, 97), (2, 2047), (1, 2048), (2, 2049), (2, 4500), (2, 20000)]


@needs_kernels
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "temperature,smoothing,masked", [(1.0, 0.0, False), (0.3, 0.1, True), (2.0, 0.0, True)]
)
def test_softmax(shape, dtype, temperature, smoothing, masked):
    g = torch.Generator().manual_seed(shape[0] * 10007 + shape[1] + int(temperature * 10))
    B, N = shape
    x = (torch.randn(B, N, generator=g, dtype=dtype) * 4).to(DEVICE)
    mask = None
    if masked:
        mask = torch.rand(B, N, generator=g) > 0.4
        mask[:, N // 2] = True  # every row keeps a valid position
        mask[0, :] = False
        mask[0, -1] = True  # a row whose only valid position is the last one
        mask = mask.to(DEVICE)
    p, ent = zt.softmax_fwd(x, mask, temperature, smoothing)
    p_ref, ent_ref = R.softmax_fwd(x, mask, temperature, smoothing)
    p64, ent64 = R.softmax_fwd(x.double(), mask, temperature, smoothing)
    _close(p, p_ref, p64, mask, smoothing, "probs")
    _close(ent, ent_ref, ent64, mask, smoothing, "entropy")
    if mask is not None:
        assert (p[~mask] == 0).all(), "masked positions must be exactly 0"
    gp = torch.randn(B, N, generator=g, dtype=dtype).to(DEVICE)
    ge = torch.randn(B, generator=g, dtype=dtype).to(DEVICE)
    gx = zt.softmax_bwd(p_ref, gp, ge, mask, temperature, smoothing)
    gx_ref = R.softmax_bwd(p_ref, gp, ge, mask, temperature, smoothing)
    gx64 = R.softmax_bwd(p_ref.double(), gp.double(), ge.double(), mask, temperature, smoothing)
    _close(gx, gx_ref, gx64, mask, smoothing, "grad")


def _close(actual, ref, ref64, mask, smoothing, what):
    """float64: the reference's tolerance. float32: err vs float64 <= 2 x the float32 reference's err + tol.

    (Near one-hot rows the float32 softmax gradient is ill-conditioned; the reference itself errs there.)
    """
    if _loose_fp64(actual.dtype, mask, smoothing):
        close(actual, ref, torch.float32, what)
    elif actual.dtype == torch.float64:
        close(actual, ref, what=what)
    else:
        err = (actual.double() - ref64).abs()
        allowed = 2 * (ref.double() - ref64).abs() + 1e-6 + 1e-5 * ref64.abs()
        bad = err > allowed
        assert not bad.any(), (
            f"{what}: {int(bad.sum())} elements off; worst excess {(err - allowed).max():.3g}"
        )


@needs_kernels
def test_softmax_bwd_full_smoothing_and_strided_grads():
    p, _ = R.softmax_fwd(torch.randn(2, 33, dtype=torch.float64, device=DEVICE), None, 1.0, 0.0)
    gp = torch.randn(33, 2, dtype=torch.float64, device=DEVICE).t()  # non-contiguous upstream gradient
    ge = torch.zeros((), dtype=torch.float64, device=DEVICE).expand(2)  # stride 0, as autograd gives
    close(zt.softmax_bwd(p, gp, ge, None, 0.7, 0.0), R.softmax_bwd(p, gp, ge, None, 0.7, 0.0), what="grad")
    assert (zt.softmax_bwd(p, gp, ge, None, 1.0, 1.0) == 0).all()


@pytest.mark.skipif(not zt.INTERPRETED, reason="counts the loads of the interpreted kernels")
def test_softmax_split_reads_chunk_stats_linearly(monkeypatch):
    """Wide rows: the scratch (per-chunk stats / dots) is read O(chunks) times per row, not O(chunks^2).

    Every interpreted load is counted unless it falls inside one of the inputs; what remains is scratch.
    Before the fix each of the nc apply programs reloaded all nc chunk stats (3 nc^2 loads per row).
    """
    import numpy as np
    from triton.runtime import interpreter

    import zoomkern.triton.softmax as zsm

    monkeypatch.setattr(zsm, "CHUNK", 2048)  # many chunks on a row the interpreter runs quickly
    B, nc = 2, 24
    N = nc * zsm.CHUNK - 5
    g = torch.Generator().manual_seed(5)
    x = torch.randn(B, N, generator=g)
    gp, ge = torch.randn(B, N, generator=g), torch.randn(B, generator=g)
    inputs: list[torch.Tensor] = []
    count = [0]
    orig = interpreter.InterpreterBuilder.create_masked_load

    def counting(self, ptrs, mask, *args, **kwargs):
        addr = ptrs.data[mask.data].astype(np.uint64)
        outside = np.ones(addr.shape, dtype=bool)
        for t in inputs:
            lo = t.data_ptr()
            outside &= ~((addr >= lo) & (addr < lo + t.numel() * t.element_size()))
        count[0] += int(outside.sum())
        return orig(self, ptrs, mask, *args, **kwargs)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_masked_load", counting)
    inputs[:] = [x]
    p, ent = zt.softmax_fwd(x, None, 1.0, 0.0)
    fwd_loads, count[0] = count[0], 0
    inputs[:] = [p, gp, ge]
    gx = zt.softmax_bwd(p, gp, ge, None, 1.0, 0.0)
    bwd_loads = count[0]
    assert fwd_loads <= 8 * B * nc, f"forward read {fwd_loads} scratch values for {B} rows x {nc} chunks"
    assert bwd_loads <= 4 * B * nc, f"backward read {bwd_loads} scratch values for {B} rows x {nc} chunks"
    p_ref, ent_ref = R.softmax_fwd(x, None, 1.0, 0.0)
    close(p, p_ref, what="probs")
    close(ent, ent_ref, what="entropy")
    close(gx, R.softmax_bwd(p, gp, ge, None, 1.0, 0.0), what="grad")


# ----------------------------------------------------------------------------- gather


def _image(B, C, H, W, dtype, layout, g):
    shape = (B, C, H, W) if layout == "CHW" else (B, H, W, C)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    hi = 256 if dtype == torch.uint8 else 65536
    return torch.randint(0, hi, shape, generator=g, dtype=torch.int64).to(dtype)


GATHER_CASES = [  # (image dtype, out dtype, layout, normalise, (ph, pw))
    (torch.uint8, torch.uint8, "CHW", False, (5, 7)),
    (torch.uint8, torch.float32, "HWC", True, (4, 9)),
    (torch.uint16, torch.float32, "CHW", True, (1, 1)),
    (torch.uint16, torch.uint16, "HWC", False, (3, 3)),
    (torch.float16, torch.float16, "CHW", True, (6, 5)),
    (torch.bfloat16, torch.float32, "HWC", False, (2, 8)),
    (torch.float32, torch.bfloat16, "CHW", True, (7, 7)),
    (torch.float64, torch.float64, "HWC", True, (5, 6)),
    (torch.float32, torch.float32, "CHW", False, (2, 1500)),  # wider than one column block
]


@needs_kernels
@pytest.mark.parametrize("img_dtype,out_dtype,layout,norm,size", GATHER_CASES)
@pytest.mark.parametrize("strided", [False, True])
def test_gather(img_dtype, out_dtype, layout, norm, size, strided):
    g = torch.Generator().manual_seed(5)
    B, C, H, W = 2, 3, 13, 17
    img = _image(B, C, H, 2 * W if strided else W, img_dtype, layout, g)
    if strided:  # every other column: a non-contiguous view, never copied
        img = img[..., ::2] if layout == "CHW" else img[:, :, ::2]
    img = img.to(DEVICE)
    ph, pw = size
    # Inside, hanging over each border and corner, fully outside, and far outside (int64 range).
    corners = [[0, 0], [-2, -3], [H - 2, W - 1], [-ph, 4], [H, W], [5, -pw - 3], [2**40, -(2**41)], [3, 4]]
    offsets = torch.tensor(corners, dtype=torch.int64).view(1, -1, 2).repeat(B, 1, 1)
    offsets[1] += torch.tensor([1, -1])
    mean = torch.tensor([0.5, 100.0, -2.0], device=DEVICE) if norm else None
    std = torch.tensor([0.25, 30.0, 3.0], device=DEVICE) if norm else None
    out = zt.gather(img, offsets.to(DEVICE), ph, pw, layout, out_dtype, mean, std)
    # The reference runs on CPU (CUDA PyTorch cannot index uint16) and writes uint16 via int32 (older
    # PyTorch has no torch.where for uint16).
    cpu = [t.cpu() if t is not None else None for t in (img, mean, std)]
    ref_dtype = torch.int32 if out_dtype == torch.uint16 else out_dtype
    ref = R.gather(cpu[0], offsets, ph, pw, layout, ref_dtype, cpu[1], cpu[2]).to(DEVICE, out_dtype)
    assert out.shape == (B, offsets.shape[1], C, ph, pw) and out.dtype == out_dtype and out.is_contiguous()
    if norm:
        close(out.double(), ref.double(), out_dtype, "patches")
    else:  # a pure copy/convert: bit-exact
        assert torch.equal(out, ref)


@needs_kernels
def test_gather_empty_and_many_programs():
    img = torch.arange(2 * 1 * 40 * 40, dtype=torch.float32).view(2, 1, 40, 40).to(DEVICE)
    empty = torch.zeros(2, 0, 2, dtype=torch.int64, device=DEVICE)
    assert zt.gather(img, empty, 3, 3, "CHW", torch.float32, None, None).shape == (2, 0, 1, 3, 3)
    offs = torch.randint(-5, 40, (2, 300, 2), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    out = zt.gather(img, offs, 3, 2, "CHW", torch.float32, None, None)  # 3600 rows of 2: two programs
    assert torch.equal(out, R.gather(img, offs, 3, 2, "CHW", torch.float32, None, None))


def test_supports_reasons():
    assert zt.supports("softmax_fwd", torch.zeros(1, 2, dtype=torch.float16, device=DEVICE or "cpu"))
    if DEVICE is None:
        reason = zt.supports("gather", torch.zeros(1, 1, 2, 2))
        assert "not a CUDA device" in reason and "TRITON_INTERPRET" in reason
    else:
        assert zt.supports("sample", torch.zeros(1, 2, device=DEVICE)) is None


# ----------------------------------------------------------------------------- interpreter


@pytest.mark.skipif(DEVICE is not None, reason="kernels already ran here (interpreted, or compiled on CUDA)")
def test_interpreted_in_subprocess():
    # Also sidesteps triton 3.6's interpreter, which fails on runtime loop bounds with NumPy 2.x
    # (int() of a 1-element array); triton 3.8's works.
    rerun_interpreted(__file__)
