"""spatial_softmax(return_entropy=True), forward+backward, vs torch.softmax then a separate entropy.

Bytes model (every side, the least any implementation must move): the forward reads the logits and
writes the probabilities (2 * B * N * itemsize); the backward reads the probabilities and their gradient
and writes the logits' gradient (3 * B * N * itemsize); fwd+bwd 5 * B * N * itemsize. The (B,) entropy
terms are negligible. GB/s under this model is printed beside this machine's memcpy rate
(_util.memcpy_gbps: bytes read + written by a large copy_), so each row shows its distance to the memory
limit as well as its ratio to a baseline.

Sides: zoomkern; eager (what a user writes: torch.softmax, then torch.special.entr summed, autograd for
the backward); compiled (torch.compile of that same eager code, inductor's C++ on CPU: compiled once per
session, warmed up outside the timing; not built under --benchmark-disable, where it would cost minutes);
torch_softmax (the probabilities alone, the issue's forward target).
"""

from __future__ import annotations

import functools

import _util
import pytest
import torch

import zoomkern as zk

FULL = (32, 180, 180)  # the attention map of the sampling benchmark: B=32, 180x180
QUICK = (4, 30, 30)
TARGET = {"eager": ">= 1.3x (fwd+bwd)"}
TARGET_FWD = {"torch_softmax": ">= 1.0x"}


def eager_fwd(x):
    # What a user writes today: the softmax, then the entropy as its own pass (entr: 0 log 0 = 0).
    p = torch.softmax(x.flatten(1), dim=1).view(x.shape)
    return p, torch.special.entr(p).flatten(1).sum(1)


@functools.cache
def compiled_fwd():
    """(torch.compile(eager_fwd), None) or (None, why not). Compiles lazily on first call."""
    try:
        return torch.compile(eager_fwd, dynamic=False), None
    except Exception as e:  # noqa: BLE001  (any failure is recorded in the result, not raised)
        return None, f"torch.compile unavailable: {type(e).__name__}: {e}"


def make(shape, device="cpu", dtype=torch.float32, compiled=None):
    """Closures over one set of inputs: ({impl: fwd+bwd fn}, {impl: forward fn}, {impl: probs-only fn})."""
    g = torch.Generator(device).manual_seed(0)
    x = 3 * torch.randn(shape, generator=g, device=device, dtype=dtype)
    grad_p = torch.randn(shape, generator=g, device=device, dtype=dtype)
    grad_ent = torch.full(shape[:1], 0.1, device=device, dtype=dtype)  # an entropy regulariser's weight

    def zk_fwd(x):
        return zk.spatial_softmax(x, return_entropy=True)

    def step(fwd):
        def run():
            xx = x.detach().requires_grad_()
            p, ent = fwd(xx)
            torch.autograd.backward([p, ent], [grad_p, grad_ent])
            return xx.grad

        return run

    def forward_only(fwd):
        def run():
            with torch.no_grad():
                return fwd(x)

        return run

    sides = {"zoomkern": zk_fwd, "eager": eager_fwd}
    if compiled is not None:
        sides["compiled"] = compiled
    both = {k: step(f) for k, f in sides.items()}
    fwd = {k: forward_only(f) for k, f in sides.items()}
    flat = x.flatten(1)
    probs = {
        "zoomkern": forward_only(lambda x: zk.spatial_softmax(x)),
        "torch_softmax": forward_only(lambda x: torch.softmax(flat, dim=1)),
    }
    return both, fwd, probs, x.numel() * x.element_size()


def check(fns) -> None:
    ref = fns["zoomkern"]()
    ref = ref if isinstance(ref, torch.Tensor) else ref[0]
    for name, fn in fns.items():
        out = fn()
        out = out if isinstance(out, torch.Tensor) else out[0]
        torch.testing.assert_close(out.reshape(ref.shape), ref, rtol=1e-4, atol=1e-6, msg=name)


def measure(quick: bool, device="cpu"):
    """({case label: fns}, [results]): fwd+bwd, forward with entropy, and probabilities alone."""
    shape = QUICK if quick else FULL
    compiled, why_not = (
        (None, "not compiled under --benchmark-disable (minutes)") if quick else compiled_fwd()
    )
    both, fwd, probs, nbytes = make(shape, device, compiled=compiled)
    try:  # the first calls compile (fwd+bwd and no-grad graphs): here, outside any timing
        for fns in (both, fwd, probs):
            check(fns)
    except Exception as e:  # noqa: BLE001
        if compiled is None:
            raise
        why_not = f"torch.compile failed here: {type(e).__name__}: {str(e)[:200]}"
        both, fwd, probs, nbytes = make(shape, device)
        for fns in (both, fwd, probs):
            check(fns)
    rounds = 1 if quick else 40
    name = "x".join(map(str, shape))
    memcpy = None if quick else _util.memcpy_gbps()
    res, cases = [], {}
    for label, fns, mult, targets in (
        (f"softmax+entropy fwd+bwd {name} f32", both, 5, TARGET),
        (f"softmax+entropy fwd {name} f32", fwd, 2, {}),
        (f"spatial_softmax fwd (probs) {name} f32", probs, 2, TARGET_FWD),
    ):
        t = _util.medians(fns, rounds=rounds, warmup=0 if quick else 3, device=device)
        peaks = {f"peak_bytes_{k}": _util.peak_memory(f, device) for k, f in fns.items()}
        extra = {"memcpy_gbps": memcpy} if memcpy else {}
        if why_not and "eager" in fns:
            extra["note"] = f"no compiled side: {why_not}"
        res.append(
            _util.result(label, "softmax_fwd", t, mult * nbytes, targets, device=device, **peaks, **extra)
        )
        cases[label] = fns
    return cases, res


@pytest.fixture(scope="module")
def measured(request):
    return measure(_util.quick(request.config))


def _row(benchmark, measured, idx, impl):
    cases, res = measured
    fns = list(cases.values())[idx]
    if impl not in fns:
        pytest.skip(res[idx].get("note", f"no {impl} side"))
    _util.run(benchmark, res[idx], impl, fns[impl])


@pytest.mark.parametrize("impl", ["zoomkern", "eager", "compiled"])
def test_softmax_entropy_fwd_bwd(benchmark, measured, impl):
    _row(benchmark, measured, 0, impl)


@pytest.mark.parametrize("impl", ["zoomkern", "eager", "compiled"])
def test_softmax_entropy_fwd(benchmark, measured, impl):
    _row(benchmark, measured, 1, impl)


@pytest.mark.parametrize("impl", ["zoomkern", "torch_softmax"])
def test_spatial_softmax_fwd_vs_torch_softmax(benchmark, measured, impl):
    _row(benchmark, measured, 2, impl)
