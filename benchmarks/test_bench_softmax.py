"""spatial_softmax(return_entropy=True), forward+backward, vs torch.softmax then a separate entropy.

Bytes model (both sides, the least any implementation must move): forward reads the logits and writes
the probabilities, backward reads the probabilities and their gradient and writes the logits' gradient:
5 * B * N * itemsize (the (B,) entropy terms are negligible). Forward alone: 2 * B * N * itemsize.
"""

from __future__ import annotations

import _util
import pytest
import torch

import zoomkern as zk

FULL = (32, 180, 180)  # the attention map of the sampling benchmark: B=32, 180x180
QUICK = (4, 30, 30)
TARGET = {"eager": ">= 1.3x (fwd+bwd)"}


def make(shape, device="cpu", dtype=torch.float32):
    """Closures over one set of inputs: {impl: fn} for fwd+bwd and for forward only."""
    g = torch.Generator(device).manual_seed(0)
    x = 3 * torch.randn(shape, generator=g, device=device, dtype=dtype)
    grad_p = torch.randn(shape, generator=g, device=device, dtype=dtype)
    grad_ent = torch.full(shape[:1], 0.1, device=device, dtype=dtype)  # an entropy regulariser's weight

    def zk_fwd(x):
        return zk.spatial_softmax(x, return_entropy=True)

    def eager_fwd(x):
        # What a user writes today: the softmax, then the entropy as its own pass (entr: 0 log 0 = 0).
        p = torch.softmax(x.flatten(1), dim=1).view(x.shape)
        return p, torch.special.entr(p).flatten(1).sum(1)

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

    both = {"zoomkern": step(zk_fwd), "eager": step(eager_fwd)}
    fwd = {"zoomkern": forward_only(zk_fwd), "eager": forward_only(eager_fwd)}
    return both, fwd, x.numel() * x.element_size()


def check(fns) -> None:
    a, b = fns["zoomkern"](), fns["eager"]()
    a, b = (a, b) if isinstance(a, torch.Tensor) else (a[0], b[0])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def measure(quick: bool, device="cpu"):
    """(fwd+bwd fns, forward fns, [fwd+bwd result, forward result])."""
    shape = QUICK if quick else FULL
    both, fwd, nbytes = make(shape, device)
    check(both)
    check(fwd)
    rounds = 1 if quick else 40
    name = "x".join(map(str, shape))
    res = []
    for label, fns, mult, targets in (("fwd+bwd", both, 5, TARGET), ("fwd", fwd, 2, {})):
        t = _util.medians(fns, rounds=rounds, warmup=0 if quick else 3, device=device)
        peaks = {f"peak_bytes_{k}": _util.peak_memory(f, device) for k, f in fns.items()}
        res.append(
            _util.result(
                f"softmax+entropy {label} {name} f32",
                "softmax_fwd",
                t,
                mult * nbytes,
                targets,
                device=device,
                **peaks,
            )
        )
    return both, fwd, res


@pytest.fixture(scope="module")
def measured(request):
    return measure(_util.quick(request.config))


@pytest.mark.parametrize("impl", ["zoomkern", "eager"])
def test_softmax_entropy_fwd_bwd(benchmark, measured, impl):
    both, _, res = measured
    _util.run(benchmark, res[0], impl, both[impl])


@pytest.mark.parametrize("impl", ["zoomkern", "eager"])
def test_softmax_entropy_fwd(benchmark, measured, impl):
    _, fwd, res = measured
    _util.run(benchmark, res[1], impl, fwd[impl])
