"""The C++ CPU kernels in zoomkern._C against the kernel-level references (zoomkern.reference).

Edge shapes (one row, one position, odd N around the 512-wide softmax chunk), masks, smoothing,
temperature, float64; bitwise agreement across thread counts; gather over every border.
"""

import os
import platform

import pytest
import torch

pytest.importorskip("zoomkern._C", reason="zoomkern._C not built (ZOOMKERN_NO_EXT=1 or no compiler)")

from tests._cpu_helpers import _probs, _seed, _with_threads  # noqa: E402
from tests._tol import close  # noqa: E402
from zoomkern import reference as R  # noqa: E402

OPS = torch.ops.zoomkern_C
# Around the SIMD softmax's 2048-wide chunk too; (1, 6145) splits one row over the threads.
SHAPES = [(1, 1), (1, 97), (3, 511), (2, 513), (3, 781), (2, 1823), (1, 2047), (2, 2049), (1, 6145)]


def _logits(B, N, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(B, N, generator=g, dtype=torch.float64)).to(dtype)


def _mask(B, N, seed=1):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(B, N, generator=g) < 0.6
    m[:, torch.randint(N, (1,), generator=g)] = True  # every row keeps >= 1 valid position
    return m


@pytest.mark.usefixtures("each_cpu_capability")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("temperature,smoothing", [(1.0, 0.0), (0.5, 0.0), (2.0, 0.1), (1.0, 1.0)])
def test_softmax_fwd_bwd_match_reference(dtype, shape, masked, temperature, smoothing):
    B, N = shape
    x = _logits(B, N, dtype)
    mask = _mask(B, N) if masked else None
    p, ent = OPS.softmax_fwd(x, mask, temperature, smoothing)
    p_ref, ent_ref = R.softmax_fwd(x, mask, temperature, smoothing)
    # The reference computes s / n_valid in float32 when a mask is given (int tensor / float -> default
    # dtype), so in float64 it is only float32-accurate there; the kernel uses double.
    tol_dtype = torch.float32 if masked and smoothing and dtype == torch.float64 else None
    close(p, p_ref, tol_dtype, what="probs")
    close(ent, ent_ref, tol_dtype, what="entropy")
    if mask is not None:
        assert (p[~mask] == 0).all(), "masked positions must be exactly 0"
    g = torch.Generator().manual_seed(2)
    gp = torch.randn(B, N, generator=g, dtype=torch.float64).to(dtype)
    ge = torch.randn(B, generator=g, dtype=torch.float64).to(dtype)
    gx = OPS.softmax_bwd(p_ref, gp, ge, mask, temperature, smoothing)
    close(gx, R.softmax_bwd(p_ref, gp, ge, mask, temperature, smoothing), tol_dtype, what="grad_x")


@pytest.mark.usefixtures("each_cpu_capability")
def test_softmax_extremes():
    # -inf logits, a single valid position, and a huge dynamic range across 512-wide chunks.
    x = torch.zeros(3, 1500, dtype=torch.float64)
    x[0, :700] = -float("inf")
    x[1, 1200] = 800.0
    x[2] = torch.linspace(-500, 500, 1500, dtype=torch.float64)
    mask = torch.ones(3, 1500, dtype=torch.bool)
    mask[1, :] = False
    mask[1, 1200] = True
    for m in (None, mask):
        for s in (0.0, 0.3):
            p, ent = OPS.softmax_fwd(x, m, 1.0, s)
            p_ref, ent_ref = R.softmax_fwd(x, m, 1.0, s)
            tol = torch.float32 if m is not None and s else None  # reference's float32 s / n_valid
            close(p, p_ref, tol, what=f"probs s={s}")
            close(ent, ent_ref, tol, what=f"entropy s={s}")
    assert torch.isfinite(OPS.softmax_fwd(x, mask, 1.0, 0.0)[1]).all()


# The sampling kernel's tests are in tests/test_cpu_sample.py.


@pytest.mark.usefixtures("each_cpu_capability")
@pytest.mark.parametrize("B", [1, 3])
def test_softmax_bitwise_identical_when_rows_are_split(B):
    # With 2 threads and B = 1 the chunks of a row are shared out; with 1 thread the row runs whole.
    x, mask = _logits(B, 9000, torch.float32), _mask(B, 9000)
    gp, ge = torch.randn(B, 9000), torch.randn(B)

    def run():
        out = []
        for m, s in ((None, 0.0), (mask, 0.1)):
            p, e = OPS.softmax_fwd(x, m, 0.7, s)
            out += [p, e, OPS.softmax_bwd(p, gp, ge, m, 0.7, s)]
        return out

    for a, b in zip(_with_threads(1, run), _with_threads(2, run), strict=True):
        assert torch.equal(a, b)


def test_cpu_capability_switch(monkeypatch):
    """The best build is taken (AVX-512 for the ops built for it, on a CPU with F/BW/VL/DQ; else AVX2 with
    AVX2+FMA); ZOOMKERN_CPU_CAPABILITY=avx2 caps at AVX2 and =default forces the generic build (so
    each_cpu_capability really runs every build). The builds agree on the softmax."""
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    x86 = platform.machine() == "x86_64"
    monkeypatch.delenv("ZOOMKERN_CPU_CAPABILITY", raising=False)
    caps = {"auto": OPS.cpu_capability()}
    if x86 and all(f in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq", "fma")):
        assert caps["auto"] == "AVX512"
    elif x86 and "avx2" in flags and "fma" in flags:
        assert caps["auto"] == "AVX2"
    x = _logits(2, 3001, torch.float32)
    probs = {"auto": OPS.softmax_fwd(x, None, 1.0, 0.0)[0]}
    for env, want in (("avx2", ("AVX2", "DEFAULT")), ("default", ("DEFAULT",))):
        monkeypatch.setenv("ZOOMKERN_CPU_CAPABILITY", env)
        assert OPS.cpu_capability() in want
        probs[env] = OPS.softmax_fwd(x, None, 1.0, 0.0)[0]
    for env in ("avx2", "default"):
        close(probs[env], probs["auto"], what=env)


def test_bitwise_identical_across_thread_counts():
    x = _logits(37, 1823, torch.float32)
    mask = _mask(37, 1823)
    probs = _probs(37, 1823, torch.float32)
    gp, ge = torch.randn(37, 1823), torch.randn(37)
    img = torch.randint(0, 255, (3, 3, 200, 170), dtype=torch.uint8)
    offs = torch.randint(-20, 200, (3, 50, 2))
    mean, std = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([50.0, 60.0, 70.0])

    def run():
        p, e = OPS.softmax_fwd(x, mask, 0.7, 0.05)
        return [
            p,
            e,
            OPS.softmax_bwd(p, gp, ge, mask, 0.7, 0.05),
            OPS.sample(probs, 12, False, _seed()),
            OPS.sample(probs, 12, True, _seed()),
            OPS.gather(img, offs, 31, 17, "CHW", torch.float32, mean, std),
        ]

    one, two = _with_threads(1, run), _with_threads(2, run)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- gather


def _image(dtype, B=2, C=3, H=23, W=19, layout="CHW", seed=4):
    g = torch.Generator().manual_seed(seed)
    hi = {torch.uint8: 256, torch.uint16: 65536}.get(dtype, 1000)
    img = torch.randint(0, hi, (B, C, H, W), generator=g, dtype=torch.int64)
    img = img.to(dtype) if dtype != torch.uint16 else img.to(torch.int32).to(torch.uint16)
    if dtype.is_floating_point:
        img = img / 7.0
        img = img.to(dtype)
    return img if layout == "CHW" else img.permute(0, 2, 3, 1).contiguous()


def _border_offsets(B, H, W, ph, pw):
    """Top-left corners inside, over every border and corner, and fully outside."""
    ys = [-ph - 5, -ph, -ph + 1, -2, 0, H // 3, H - ph, H - ph + 1, H - 1, H, H + 7]
    xs = [-pw - 3, -pw, -pw + 1, -1, 0, W // 2, W - pw, W - pw + 2, W - 1, W, W + 9]
    pairs = [(y, x) for y in ys for x in xs]
    return torch.tensor(pairs, dtype=torch.int64)[None].expand(B, -1, -1).contiguous()


@pytest.mark.usefixtures("each_cpu_capability")
@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.uint16, torch.float16, torch.bfloat16, torch.float32, torch.float64]
)
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("ph,pw", [(1, 1), (5, 7), (8, 4)])
def test_gather_matches_reference_over_borders(dtype, layout, ph, pw):
    img = _image(dtype, layout=layout)
    offs = _border_offsets(2, 23, 19, ph, pw)
    out = OPS.gather(img, offs, ph, pw, layout, dtype, None, None)
    ref = R.gather(img, offs, ph, pw, layout, dtype, None, None)
    assert out.dtype == dtype and out.is_contiguous()
    assert torch.equal(out, ref)


@pytest.mark.usefixtures("each_cpu_capability")
@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("norm", ["both", "mean", "std", "none"])
def test_gather_convert_and_normalise(dtype, out_dtype, layout, norm):
    img = _image(dtype, layout=layout)
    offs = _border_offsets(2, 23, 19, 6, 5)
    mean = torch.tensor([100.5, 3.0, 7.25]) if norm in ("both", "mean") else None
    std = torch.tensor([57.1, 2.0, 0.3]) if norm in ("both", "std") else None
    out = OPS.gather(img, offs, 6, 5, layout, out_dtype, mean, std)
    ref = R.gather(img, offs, 6, 5, layout, out_dtype, mean, std)
    assert out.dtype == out_dtype
    # Conversion and normalisation are rounded op by op like the reference: bit for bit.
    assert torch.equal(out, ref), (out.double() - ref.double()).abs().max()


@pytest.mark.usefixtures("each_cpu_capability")
@pytest.mark.parametrize(
    "src,dst",
    [
        (torch.float32, torch.uint8),
        (torch.uint16, torch.uint8),
        (torch.uint8, torch.uint16),
        (torch.float64, torch.float32),
    ],
)
def test_gather_plain_conversion(src, dst):
    img = _image(src)
    offs = _border_offsets(2, 23, 19, 4, 4)
    assert torch.equal(
        OPS.gather(img, offs, 4, 4, "CHW", dst, None, None), R.gather(img, offs, 4, 4, "CHW", dst, None, None)
    )


@pytest.mark.usefixtures("each_cpu_capability")
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_gather_non_contiguous_views(dtype):
    big = _image(dtype, B=3, C=4, H=40, W=50)
    offs = _border_offsets(2, 17, 21, 6, 5)
    views = {
        "CHW": [big[::2, 1:, 5:22, 3:45:2], big.transpose(2, 3)[:2, :3, 2:19, 1:22]],
        # Channels-last views: strided W, and a channel stride of 1 over a larger buffer.
        "HWC": [big.permute(0, 2, 3, 1)[::2, 5:22, 3:45:2, 1:], big.permute(0, 3, 2, 1)[:2, 1:18, 2:23, :3]],
    }
    for layout, vs in views.items():
        for v in vs:
            assert not v.is_contiguous()
            out = OPS.gather(v, offs, 6, 5, layout, torch.float32, torch.tensor([1.0, 2, 3]), None)
            ref = R.gather(v, offs, 6, 5, layout, torch.float32, torch.tensor([1.0, 2, 3]), None)
            assert torch.equal(out, ref), layout
            out = OPS.gather(v, offs, 6, 5, layout, dtype, None, None)
            assert torch.equal(out, R.gather(v, offs, 6, 5, layout, dtype, None, None)), layout


@pytest.mark.usefixtures("each_cpu_capability")
@pytest.mark.parametrize("C", [1, 2, 3, 4])
@pytest.mark.parametrize(
    "dtype,out_dtype,norm",
    [
        (torch.uint8, torch.uint8, False),
        (torch.uint8, torch.float32, True),
        (torch.uint16, torch.float16, True),
        (torch.float32, torch.float32, False),
        (torch.float64, torch.bfloat16, True),
    ],
)
def test_gather_interleaved_rows(C, dtype, out_dtype, norm):
    # Dense HWC rows are de-interleaved in one pass (16-pixel vector steps for 3-channel bytes, 256-pixel
    # tiles when converting): widths around 16 and past 256, every start alignment, every border.
    img = _image(dtype, B=2, C=C, H=21, W=331, layout="HWC")
    mean = torch.tensor([100.5, 3.0, 7.25, -1.0][:C]) if norm else None
    std = torch.tensor([57.1, 2.0, 0.3, 3.0][:C]) if norm else None
    for pw in (15, 16, 17, 47, 300):
        xs = (-pw + 1, -7, 0, 1, 2, 3, 5, 331 - pw, 320)
        offs = torch.tensor([[y, x] for y in (-3, 0, 18) for x in xs])
        offs = offs[None].expand(2, -1, -1).contiguous()
        out = OPS.gather(img, offs, 4, pw, "HWC", out_dtype, mean, std)
        ref = R.gather(img, offs, 4, pw, "HWC", out_dtype, mean, std)
        assert torch.equal(out, ref), (pw, (out.double() - ref.double()).abs().max())


@pytest.mark.usefixtures("each_cpu_capability")
@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16])
def test_gather_short_rows_every_width(dtype):
    # Unconverted rows of up to 64 bytes are copied inline as two overlapping moves (8/16/32 bytes): every
    # width 1..70 pixels, clipped at both borders so the copied run is shorter than the patch too.
    img = _image(dtype, B=2, C=2, H=9, W=83)
    for pw in range(1, 71):
        offs = torch.tensor([[y, x] for y in (-2, 3) for x in (-5, 0, 3, 83 - pw, 80)])
        offs = offs[None].expand(2, -1, -1).contiguous()
        out = OPS.gather(img, offs, 4, pw, "CHW", dtype, None, None)
        assert torch.equal(out, R.gather(img, offs, 4, pw, "CHW", dtype, None, None)), pw


@pytest.mark.usefixtures("each_cpu_capability")
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_gather_many_patches_split_over_threads(layout):
    # The prefetch cursor runs ahead across patch ends and stops at each thread's share: many short
    # patches (some outside the image), tasks that start and end mid-patch, 1 and 2 threads alike.
    img = _image(torch.uint8, B=3, C=3, H=200, W=170, layout=layout)
    g = torch.Generator().manual_seed(5)
    offs = torch.randint(-40, 200, (3, 70, 2), generator=g)
    ref = R.gather(img, offs, 37, 33, layout, torch.uint8, None, None)
    for threads in (1, 2):
        out = _with_threads(threads, lambda: OPS.gather(img, offs, 37, 33, layout, torch.uint8, None, None))
        assert torch.equal(out, ref), threads


@pytest.mark.usefixtures("each_cpu_capability")
@pytest.mark.parametrize(
    "dtype,layout,W", [(torch.uint8, "HWC", 1400), (torch.uint8, "CHW", 4100), (torch.uint16, "CHW", 2048)]
)
def test_gather_rows_a_page_apart(dtype, layout, W):
    # Image rows >= 4 KiB apart switch on the touch-ahead loads (kTouch): patches over every border (rows
    # above and below the image are skipped by the touches), shares split mid-patch over 2 threads.
    img = _image(dtype, B=3, C=3, H=40, W=W, layout=layout)
    g = torch.Generator().manual_seed(6)
    ys = torch.randint(-30, 45, (3, 41, 1), generator=g)  # 3 * 41 * 23 rows: 2 threads split mid-patch
    xs = torch.randint(-20, W + 5, (3, 41, 1), generator=g)
    offs = torch.cat([ys, xs], 2)
    ref = R.gather(img, offs, 23, 17, layout, dtype, None, None)
    for threads in (1, 2):
        out = _with_threads(threads, lambda: OPS.gather(img, offs, 23, 17, layout, dtype, None, None))
        assert torch.equal(out, ref), threads


def test_gather_extreme_offsets_and_empty():
    img = _image(torch.uint8)
    offs = torch.tensor([[[2**62, -(2**62)], [-(2**62), 3]], [[0, 0], [2**63 - 1, -(2**63)]]])
    out = OPS.gather(img, offs, 3, 3, "CHW", torch.uint8, None, None)
    assert torch.equal(out, R.gather(img, offs.clamp(-100, 100), 3, 3, "CHW", torch.uint8, None, None))
    empty = OPS.gather(img, torch.zeros(2, 0, 2, dtype=torch.int64), 3, 3, "CHW", torch.uint8, None, None)
    assert empty.shape == (2, 0, 3, 3, 3)


def _gather(image=None, offsets=None, ph=2, pw=2, layout="CHW", mean=None):
    image = torch.zeros(1, 1, 4, 4) if image is None else image
    offsets = torch.zeros(1, 1, 2, dtype=torch.int64) if offsets is None else offsets
    return OPS.gather(image, offsets, ph, pw, layout, torch.float32, mean, None)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: OPS.softmax_fwd(torch.randn(3), None, 1.0, 0.0), "x must be 2-D"),
        (lambda: OPS.softmax_fwd(torch.randn(2, 3).half(), None, 1.0, 0.0), "x must be float32"),
        (lambda: OPS.softmax_fwd(torch.randn(2, 3), torch.ones(2, 3), 1.0, 0.0), "mask must be bool"),
        (lambda: OPS.softmax_fwd(torch.randn(2, 3), None, 0.0, 0.0), "temperature"),
        (lambda: OPS.sample(torch.rand(2, 3), 4, False, _seed()), "k = 4 exceeds"),
        (lambda: OPS.sample(torch.rand(2, 3), 1, False, torch.zeros(3, dtype=torch.int64)), "seed"),
        (lambda: _gather(offsets=torch.zeros(1, 1, 2)), "offsets must be int64"),
        (lambda: _gather(ph=0), "patch size"),
        (lambda: _gather(layout="WHC"), "layout"),
        (lambda: _gather(image=torch.zeros(1, 1, 4, 4, dtype=torch.int32)), "image must be uint8"),
        (lambda: _gather(image=torch.zeros(1, 2, 4, 4), mean=torch.zeros(3)), "mean must have shape"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()
