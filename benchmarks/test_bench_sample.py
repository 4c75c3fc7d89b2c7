"""sample_patches vs torch.multinomial, with and without replacement, on an attention map.

Bytes model (both sides): one read of the probabilities, B * N * itemsize; the (B, k) outputs are
negligible. Without replacement this is the op a Zoom-In/ATS step calls per stage; multinomial without
replacement is what public implementations use today.
"""

from __future__ import annotations

import _util
import pytest
import torch

import zoomkern as zk

FULL = (32, 180, 180, 10)  # B, H, W, k: the case
QUICK = (4, 20, 20, 5)
TARGETS = {False: {"torch_multinomial": ">= 5x"}, True: {}}


def make(B, H, W, k, replace: bool, device="cpu"):
    g = torch.Generator(device).manual_seed(0)
    probs = zk.spatial_softmax(3 * torch.randn(B, H, W, generator=g, device=device))
    flat = probs.view(B, -1)
    gen_zk = torch.Generator(device).manual_seed(1)
    gen_mn = torch.Generator(device).manual_seed(1)
    fns = {
        "zoomkern": lambda: zk.sample_patches(probs, k, replace=replace, generator=gen_zk).indices,
        "torch_multinomial": lambda: torch.multinomial(flat, k, replacement=replace, generator=gen_mn),
    }
    return fns, probs.numel() * probs.element_size()


def check(fns, n: int, replace: bool) -> None:
    a, b = fns["zoomkern"](), fns["torch_multinomial"]()
    assert a.shape == b.shape and a.dtype == torch.int64
    assert bool(((a >= 0) & (a < n)).all())
    if not replace:  # distinct within each row
        assert bool((a.sort(1).values.diff(dim=1) != 0).all())


def measure(quick: bool, device="cpu"):
    """({replace: fns}, {replace: result})."""
    B, H, W, k = QUICK if quick else FULL
    fns_by, res_by = {}, {}
    for replace in (False, True):
        fns, nbytes = make(B, H, W, k, replace, device)
        check(fns, H * W, replace)
        t = _util.medians(fns, rounds=1 if quick else 50, warmup=0 if quick else 3, device=device)
        peaks = {f"peak_bytes_{n}": _util.peak_memory(f, device) for n, f in fns.items()}
        mode = "with" if replace else "without"
        case = f"sample {mode} replacement B={B} {H}x{W} k={k}"
        fns_by[replace] = fns
        res_by[replace] = _util.result(case, "sample", t, nbytes, TARGETS[replace], device=device, **peaks)
    return fns_by, res_by


@pytest.fixture(scope="module")
def measured(request):
    return measure(_util.quick(request.config))


@pytest.mark.parametrize("replace", [False, True], ids=["without_replacement", "with_replacement"])
@pytest.mark.parametrize("impl", ["zoomkern", "torch_multinomial"])
def test_sample(benchmark, measured, impl, replace):
    fns, res = measured[0][replace], measured[1][replace]
    _util.run(benchmark, res, impl, fns[impl])
