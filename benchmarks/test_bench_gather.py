"""gather_patches vs what users write today: a Python loop of slices (the official Zoom-In code) and
torch advanced indexing; and, for patches of a huge image, a plain memcpy of the same bytes (the ceiling).

Bytes model (every side): each patch pixel is read once from the image and written once to the output,
B * k * C * ph * pw * (in itemsize + out itemsize). GB/s counts both directions; the memcpy ceiling
moves the same bytes as 16 contiguous runs (ctypes.memmove, one thread: what "copy the bytes" costs).
Each call uses the next of NSETS offset sets, so repeated rounds do not find the patches hot in cache.
Every case also notes zoomkern's GB/s as a fraction of the machine's copy rate (``_util.memcpy_gbps``: a
64 MiB ``copy_``, read + write), its distance to the memory limit. A patch row of the huge image is one
768-byte run per image row (60 KB apart, each on its own 4 KiB page), so that gather pays a TLB miss per
row that the contiguous memcpy runs do not.
"""

from __future__ import annotations

import ctypes
import itertools

import _util
import pytest
import torch

import zoomkern as zk

NSETS = 16
MNIST = {"full": (16, 1500, 1500, 64, 50), "quick": (2, 200, 200, 8, 50)}  # B, H, W, k, patch
HUGE = {"full": 20000, "quick": 1000}  # side of the one HWC uint8 image, 3 channels
HUGE_K, HUGE_P = 16, 256
TARGETS = {"python_loop": ">= 10x", "advanced_indexing": ">= 10x"}


def _offsets(g, B, k, H, W, ph, pw):
    """NSETS sets of (B, k, 2) int64 top-left corners, every patch inside the image (the baselines
    cannot pad; zoomkern's border handling is tested in tests/)."""
    ys = torch.randint(0, H - ph + 1, (NSETS, B, k), generator=g)
    xs = torch.randint(0, W - pw + 1, (NSETS, B, k), generator=g)
    return list(torch.stack([ys, xs], -1).unbind(0))


def python_loop(image, offsets, ph, pw, layout):
    """The official Zoom-In code's way: one slice per patch, then a stack."""
    out = []
    for b, rows in enumerate(offsets.tolist()):
        for y, x in rows:
            if layout == "CHW":
                out.append(image[b, :, y : y + ph, x : x + pw])
            else:
                out.append(image[b, y : y + ph, x : x + pw, :].permute(2, 0, 1))
    B, k = offsets.shape[:2]
    return torch.stack(out).view(B, k, -1, ph, pw)


def advanced_indexing(image, offsets, ph, pw, layout):
    dev = offsets.device
    ys = offsets[..., 0, None] + torch.arange(ph, device=dev)  # (B, k, ph)
    xs = offsets[..., 1, None] + torch.arange(pw, device=dev)  # (B, k, pw)
    b = torch.arange(offsets.shape[0], device=dev)[:, None, None, None]
    if layout == "CHW":  # the slice between advanced indices moves C last: (B, k, ph, pw, C)
        vals = image[b, :, ys[..., :, None], xs[..., None, :]]
    else:
        vals = image[b, ys[..., :, None], xs[..., None, :]]
    return vals.permute(0, 1, 4, 2, 3).contiguous()


def _cycling(fn, image, sets, *args):
    it = itertools.cycle(sets)
    return lambda: fn(image, next(it), *args)


def mnist_case(quick: bool):
    """16 one-channel 1500x1500 uint8 canvases (Megapixel MNIST), 64 patches of 50x50 each."""
    B, H, W, k, p = MNIST["quick" if quick else "full"]
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (B, 1, H, W), generator=g, dtype=torch.uint8)
    sets = _offsets(g, B, k, H, W, p, p)
    gz = lambda im, off, ph, pw, layout: zk.gather_patches(im, off, (ph, pw), layout=layout)
    fns = {
        name: _cycling(f, image, sets, p, p, "CHW")
        for name, f in (
            ("zoomkern", gz),
            ("python_loop", python_loop),
            ("advanced_indexing", advanced_indexing),
        )
    }
    ref = python_loop(image, sets[0], p, p, "CHW")
    for name in fns:  # every side must cut the same pixels
        f = {"zoomkern": gz, "python_loop": python_loop, "advanced_indexing": advanced_indexing}[name]
        assert torch.equal(f(image, sets[0], p, p, "CHW"), ref), name
    case = f"gather {B}x1x{H}x{W} u8, {k} patches {p}x{p}"
    return case, fns, 2 * B * k * p * p, TARGETS


def mnist_norm_case(quick: bool):
    """The same cut, normalised to float32 in the pass, vs the loop then .float().sub(mean).div(std)."""
    B, H, W, k, p = MNIST["quick" if quick else "full"]
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (B, 1, H, W), generator=g, dtype=torch.uint8)
    sets = _offsets(g, B, k, H, W, p, p)
    mean, std = 33.3, 78.6

    def zk_norm(im, off, ph, pw, layout):
        return zk.gather_patches(im, off, (ph, pw), layout=layout, dtype=torch.float32, mean=mean, std=std)

    def loop_norm(im, off, ph, pw, layout):
        return python_loop(im, off, ph, pw, layout).float().sub_(mean).div_(std)

    torch.testing.assert_close(zk_norm(image, sets[0], p, p, "CHW"), loop_norm(image, sets[0], p, p, "CHW"))
    fns = {
        "zoomkern": _cycling(zk_norm, image, sets, p, p, "CHW"),
        "python_loop": _cycling(loop_norm, image, sets, p, p, "CHW"),
    }
    case = f"gather+normalise to f32 {B}x1x{H}x{W} u8, {k} patches {p}x{p}"
    return case, fns, B * k * p * p * (1 + 4), {}


def _advise_huge_pages(t: torch.Tensor) -> bool:
    """madvise(MADV_HUGEPAGE) over the untouched buffer of ``t`` (what torch's THP_MEM_ALLOC_ENABLE=1 does
    for every large allocation): 2 MiB pages where the kernel allows them. False where it refuses."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return False
    huge = 2 << 20
    start = -(-t.data_ptr() // huge) * huge
    end = (t.data_ptr() + t.numel() * t.element_size()) // huge * huge
    if end <= start:
        return False
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc.madvise(start, end - start, 14) == 0  # 14 = MADV_HUGEPAGE


def huge_image(side: int, huge_pages: bool = False) -> torch.Tensor:
    """(1, side, side, 3) uint8 HWC, every page written once (so timings never see first-touch faults);
    rows differ, so a wrong row would show in the check. ``huge_pages``: 2 MiB pages where the OS allows."""
    image = torch.empty((1, side, side, 3), dtype=torch.uint8)
    if huge_pages:
        _advise_huge_pages(image)
    flat = image.view(side, side * 3)
    flat.copy_((torch.arange(side * 3) % 251).to(torch.uint8).expand(side, -1))
    flat[:, ::97] = (torch.arange(side) % 256).to(torch.uint8)[:, None]
    return image


def huge_case(image: torch.Tensor, pages: str = ""):
    """16 patches of 256x256x3 from one HWC uint8 image vs memcpy of the same bytes as 16 runs."""
    side = image.shape[1]
    k, p, C = HUGE_K, HUGE_P, 3
    g = torch.Generator().manual_seed(2)
    sets = _offsets(g, 1, k, side, side, p, p)
    run = p * p * C
    out = torch.empty(k * run, dtype=torch.uint8)
    base, stride_y = image.data_ptr(), image.stride(1)

    starts = [[min(y * stride_y + x * C, image.numel() - run) for y, x in s[0].tolist()] for s in sets]
    it = itertools.cycle(starts)
    dst = out.data_ptr()

    def memcpy_runs():
        for i, start in enumerate(next(it)):
            ctypes.memmove(dst + i * run, base + start, run)
        return out

    gz = lambda im, off, ph, pw, layout: zk.gather_patches(im, off, (ph, pw), layout=layout)
    fns = {
        "zoomkern": _cycling(gz, image, sets, p, p, "HWC"),
        "memcpy": memcpy_runs,
        "python_loop": _cycling(python_loop, image, sets, p, p, "HWC"),
        "advanced_indexing": _cycling(advanced_indexing, image, sets, p, p, "HWC"),
    }
    assert torch.equal(gz(image, sets[0], p, p, "HWC"), python_loop(image, sets[0], p, p, "HWC"))
    case = f"gather 1x{side}x{side}x3 u8 HWC{pages}, {k} patches {p}x{p}"
    return case, fns, 2 * k * run, {"memcpy": ">= 50% of memcpy rate"}


def measure(quick: bool, image: torch.Tensor | None = None):
    """({case: fns}, {case: result}) for the gather cases. The huge image is measured twice: on ordinary
    4 KiB pages (a TLB miss per patch row) and on 2 MiB pages (torch's THP_MEM_ALLOC_ENABLE=1 gives them)."""
    side = HUGE["quick" if quick else "full"]
    if image is None:
        image = huge_image(side)
    fns_by, res_by = {}, {}
    copy_rate = _util.memcpy_gbps()
    cases = [
        ("mnist", lambda: mnist_case(quick)),
        ("norm", lambda: mnist_norm_case(quick)),
        ("huge", lambda: huge_case(image)),
        ("huge_thp", lambda: huge_case(huge_image(side, huge_pages=True), " (2 MiB pages)")),
    ]
    for key, made in cases:
        case, fns, nbytes, targets = made()
        t = _util.medians(fns, rounds=1 if quick else 30, warmup=0 if quick else 2)
        peaks = {f"peak_bytes_{n}": _util.peak_memory(f) for n, f in fns.items()}
        fns_by[key] = fns
        res = _util.result(case, "gather", t, nbytes, targets, **peaks)
        res["memcpy_gbps"] = copy_rate
        res["rate_fraction"] = res["gbps"]["zoomkern"] / copy_rate
        res["note"] = (
            f"zoomkern {res['gbps']['zoomkern']:.2f} GB/s = {100 * res['rate_fraction']:.0f}% of the "
            f"machine's copy rate ({copy_rate:.1f} GB/s)"
        )
        res_by[key] = res
    return fns_by, res_by


@pytest.fixture(scope="module")
def measured(request):
    # The 1.2 GB image is made once per session, and only when measuring for real.
    return measure(_util.quick(request.config))


def _row(benchmark, measured, key, impl):
    fns, res = measured[0][key], measured[1][key]
    _util.run(benchmark, res, impl, fns[impl])


@pytest.mark.parametrize("impl", ["zoomkern", "python_loop", "advanced_indexing"])
def test_gather_mnist(benchmark, measured, impl):
    _row(benchmark, measured, "mnist", impl)


@pytest.mark.parametrize("impl", ["zoomkern", "python_loop"])
def test_gather_normalise(benchmark, measured, impl):
    _row(benchmark, measured, "norm", impl)


@pytest.mark.parametrize("impl", ["zoomkern", "memcpy", "python_loop", "advanced_indexing"])
@pytest.mark.parametrize("pages", ["huge", "huge_thp"])
def test_gather_huge_hwc(benchmark, measured, impl, pages):
    _row(benchmark, measured, pages, impl)
