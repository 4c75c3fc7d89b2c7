"""sample_patches vs torch.multinomial (eager and torch.compile'd), with and without replacement.

Bytes model (every side): one read of the probabilities, B * N * itemsize; the (B, k) outputs are
negligible. GB/s under that model is printed beside the machine's memcpy rate (read + write counted, as in
_util.memcpy_gbps), so "rate_fraction" says how far each kernel is from the memory limit. Without
replacement this is the op a Zoom-In/ATS step calls per stage; multinomial is what public implementations
use today, and torch.compile of it is the strongest baseline a user has.
"""

from __future__ import annotations

import statistics
import time

import _util
import pytest
import torch

import zoomkern as zk

FULL = (32, 180, 180, 10)  # B, H, W, k: the case
QUICK = (4, 20, 20, 5)
TARGETS = {False: {"torch_multinomial": ">= 5x"}, True: {"torch_multinomial": ">= 2x"}}


def _compiled(flat, k: int, replace: bool):
    """torch.compile of the multinomial call, or (None, why) when it cannot compile here."""
    fn = torch.compile(lambda p: torch.multinomial(p, k, replacement=replace), dynamic=False)
    try:
        fn(flat)
    except Exception as e:  # noqa: BLE001  (any compiler failure is recorded, not raised)
        return None, f"torch.compile(torch.multinomial) failed: {type(e).__name__}: {str(e)[:200]}"
    return fn, None


def make(B, H, W, k, replace: bool, device="cpu", compiled=True):
    g = torch.Generator(device).manual_seed(0)
    probs = zk.spatial_softmax(3 * torch.randn(B, H, W, generator=g, device=device))
    flat = probs.view(B, -1)
    gen_zk = torch.Generator(device).manual_seed(1)
    gen_mn = torch.Generator(device).manual_seed(1)
    fns = {
        "zoomkern": lambda: zk.sample_patches(probs, k, replace=replace, generator=gen_zk).indices,
        "torch_multinomial": lambda: torch.multinomial(flat, k, replacement=replace, generator=gen_mn),
    }
    note = "torch.compile side skipped in the quick run" if not compiled else None
    if compiled:
        # The compiled function draws from the global generator: a Generator argument breaks the graph.
        fn, note = _compiled(flat, k, replace)
        if fn is not None:
            fns["torch_multinomial_compiled"] = lambda: fn(flat)
    return fns, probs.numel() * probs.element_size(), note


def cpu_medians(fns, rounds: int) -> dict[str, float]:
    """{name: median process CPU seconds} (all threads), interleaved like _util.medians. On a shared, busy
    machine wall-clock medians include time spent descheduled; CPU time does not, so both are reported."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            times[name].append(time.process_time() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def check(fns, n: int, replace: bool) -> None:
    for name, fn in fns.items():
        a = fn()
        assert a.dtype == torch.int64 and bool(((a >= 0) & (a < n)).all()), name
        if not replace:  # distinct within each row
            assert bool((a.sort(1).values.diff(dim=1) != 0).all()), name


def measure(quick: bool, device="cpu"):
    """({replace: fns}, {replace: result})."""
    B, H, W, k = QUICK if quick else FULL
    copy = _util.memcpy_gbps(8 << 20, rounds=3) if quick else _util.memcpy_gbps()
    fns_by, res_by = {}, {}
    for replace in (False, True):
        fns, nbytes, note = make(B, H, W, k, replace, device, compiled=not quick)
        check(fns, H * W, replace)
        t = _util.medians(fns, rounds=1 if quick else 60, warmup=0 if quick else 3, device=device)
        peaks = {f"peak_bytes_{n}": _util.peak_memory(f, device) for n, f in fns.items()}
        mode = "with" if replace else "without"
        case = f"sample {mode} replacement B={B} {H}x{W} k={k}"
        res = _util.result(case, "sample", t, nbytes, TARGETS[replace], device=device, **peaks)
        res["rate_fraction"] = res["gbps"]["zoomkern"] / copy
        res["memcpy_gbps"] = copy
        if not quick and device == "cpu":
            res["cpu_seconds"] = cpu_medians(fns, rounds=30)
        if note:
            res["note"] = note
        fns_by[replace], res_by[replace] = fns, res
    return fns_by, res_by


@pytest.fixture(scope="module")
def measured(request):
    return measure(_util.quick(request.config))


@pytest.mark.parametrize("replace", [False, True], ids=["without_replacement", "with_replacement"])
@pytest.mark.parametrize("impl", ["zoomkern", "torch_multinomial", "torch_multinomial_compiled"])
def test_sample(benchmark, measured, impl, replace):
    fns, res = measured[0][replace], measured[1][replace]
    if impl not in fns:
        pytest.skip(res.get("note", "not measured"))
    for name, sec in res.get("cpu_seconds", {}).items():
        benchmark.extra_info[f"cpu_median_s_{name}"] = sec
    _util.run(benchmark, res, impl, fns[impl])
