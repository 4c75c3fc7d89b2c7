"""GPU: every backend against the reference, and the GPU figures (skipped without CUDA).

Bytes models: softmax fwd+bwd 5 * B * N * 4 (as on CPU), compared with a device-to-device copy
(2 * bytes: read + write); sampling one read of the probabilities; the pinned-host gather the patch bytes
once across PCIe (B * k * C * ph * pw), compared with a pinned host-to-device copy of those bytes.
The summary table goes to $ZOOMKERN_GPU_SUMMARY (default benchmarks/gpu_summary.md) and stdout.
"""

from __future__ import annotations

import os

import _util
import pytest
import torch
from test_bench_gather import advanced_indexing

import zoomkern as zk
from zoomkern import backends, reference

pytestmark = pytest.mark.gpu
DEV = "cuda"
SUMMARY: list[dict] = []


def _gen(seed):
    return torch.Generator(DEV).manual_seed(seed)


def backend_inputs():
    """Small edge-shaped inputs for each kernel-level op, on the GPU."""
    g = _gen(0)
    x = 3 * torch.randn(7, 1823, generator=g, device=DEV)
    mask = torch.rand(7, 1823, generator=g, device=DEV) > 0.3
    p, _ = reference.softmax_fwd(x, mask, 0.7, 0.1)
    img = torch.randint(0, 256, (2, 3, 97, 131), generator=g, device=DEV, dtype=torch.uint8)
    off = torch.stack(
        [
            torch.randint(-20, 100, (2, 9), generator=g, device=DEV),
            torch.randint(-20, 135, (2, 9), generator=g, device=DEV),
        ],
        -1,
    )
    mean = torch.tensor([0.4, 0.5, 0.6], device=DEV) * 255
    std = torch.tensor([0.2, 0.25, 0.3], device=DEV) * 255
    seed = torch.tensor([12345, 678], device=DEV, dtype=torch.int64)
    gp, ge = torch.randn_like(p), torch.randn(7, device=DEV)
    return {
        "softmax_fwd": [(x, None, 1.0, 0.0), (x, mask, 0.7, 0.1)],
        "softmax_bwd": [(p, gp, ge, mask, 0.7, 0.1), (p, gp, ge, None, 1.0, 0.0)],
        "sample": [(p, 16, False, seed), (p, 16, True, seed)],
        "gather": [
            (img, off, 17, 23, "CHW", torch.uint8, None, None),
            (img.permute(0, 2, 3, 1), off, 17, 23, "HWC", torch.float32, mean, std),
        ],
    }


@pytest.mark.parametrize("op", backends.OPS)
def test_backends_match_reference(op):
    checked = []
    for name in backends.ORDER:
        if name == "reference" or backends.why_not(name, op, torch.device(DEV)):
            continue
        kern = backends.module(name)
        for args in backend_inputs()[op]:
            got, want = getattr(kern, op)(*args), getattr(reference, op)(*args)
            if op == "sample":
                # Same stream; only a last-ulp difference in log() can swap near-tied keys: <= 1% of draws.
                assert got.shape == want.shape and float((got != want).float().mean()) <= 0.01, name
            else:
                for a, b in zip(
                    got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,),
                    strict=True,
                ):
                    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{name} {op}")
        checked.append(name)
    print(f"{op}: checked {checked or 'no GPU backend'} against the reference")


def _record(benchmark, res, fn):
    SUMMARY.append(res)
    _util.run(benchmark, res, "zoomkern", fn)


def test_softmax_gpu(benchmark, request):
    quick = _util.quick(request.config)
    B, N = (4, 4096) if quick else (64, 2**18)
    g = _gen(0)
    x = 3 * torch.randn(B, N, generator=g, device=DEV)
    gp, ge = torch.randn_like(x), torch.full((B,), 0.1, device=DEV)
    dst = torch.empty_like(x)

    def step(fwd):
        def run():
            xx = x.detach().requires_grad_()
            torch.autograd.backward(list(fwd(xx)), [gp, ge])
            return xx.grad

        return run

    def eager(xx):
        p = torch.softmax(xx, 1)
        return p, torch.special.entr(p).sum(1)

    fns = {"zoomkern": step(lambda xx: zk.spatial_softmax(xx, return_entropy=True)), "eager": step(eager)}
    torch.testing.assert_close(fns["zoomkern"](), fns["eager"](), rtol=1e-4, atol=1e-6)
    t = _util.medians({**fns, "d2d_copy": lambda: dst.copy_(x)}, rounds=1 if quick else 50, device=DEV)
    nbytes = 5 * x.numel() * 4
    copy_gbps = 2 * x.numel() * 4 / t.pop("d2d_copy") / 1e9
    res = _util.result(
        f"GPU softmax+entropy fwd+bwd {B}x{N} f32",
        "softmax_fwd",
        t,
        nbytes,
        {"eager": ">= 1.3x"},
        device=DEV,
        d2d_copy_gbps=copy_gbps,
        note=f"d2d copy {copy_gbps:.0f} GB/s",
        **{f"peak_bytes_{k}": _util.peak_memory(f, DEV) for k, f in fns.items()},
    )
    res["rate_fraction"] = res["gbps"]["zoomkern"] / copy_gbps
    _record(benchmark, res, fns["zoomkern"])


@pytest.mark.parametrize("replace", [False, True], ids=["without_replacement", "with_replacement"])
def test_sample_gpu(benchmark, request, replace):
    quick = _util.quick(request.config)
    B, N, k = (4, 4096, 8) if quick else (64, 2**18, 64)
    probs = zk.spatial_softmax(3 * torch.randn(B, N, generator=_gen(0), device=DEV))
    gz, gm = _gen(1), _gen(1)
    fns = {
        "zoomkern": lambda: zk.sample_patches(probs, k, replace=replace, generator=gz).indices,
        "torch_multinomial": lambda: torch.multinomial(probs, k, replacement=replace, generator=gm),
    }
    graph_note = {}
    for name, fn in (
        ("zoomkern", lambda: zk.sample_patches(probs, k, replace=replace).indices),
        ("torch_multinomial", lambda: torch.multinomial(probs, k, replacement=replace)),
    ):
        try:  # the default CUDA generator is graph-safe; a capture fails on any host-device sync
            fn()
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            fns[f"{name}_graph"] = graph.replay
        except Exception as e:  # recorded, not raised: torch.multinomial may not be capturable
            graph_note[name] = f"not capturable ({type(e).__name__}: {str(e)[:80]})"
    assert "zoomkern_graph" in fns, graph_note.get("zoomkern")
    t = _util.medians(fns, rounds=1 if quick else 100, device=DEV)
    mode = "with" if replace else "without"
    target = {} if replace else {"torch_multinomial": ">= 5x (CPU target)"}
    res = _util.result(
        f"GPU sample {mode} replacement B={B} N={N} k={k}",
        "sample",
        t,
        probs.numel() * 4,
        target,
        device=DEV,
        note="; ".join(f"{k}: {v}" for k, v in graph_note.items()),
    )
    _record(benchmark, res, fns["zoomkern"])


def test_pinned_gather_gpu(benchmark, request):
    quick = _util.quick(request.config)
    side, k, p = (1000, 16, 256) if quick else (20000, 16, 256)
    image = torch.empty((1, side, side, 3), dtype=torch.uint8).pin_memory()
    image.view(side, -1).copy_((torch.arange(side * 3) % 251).to(torch.uint8).expand(side, -1))
    g = torch.Generator().manual_seed(2)
    off = torch.stack(
        [
            torch.randint(0, side - p + 1, (1, k), generator=g),
            torch.randint(0, side - p + 1, (1, k), generator=g),
        ],
        -1,
    )
    off_dev = off.to(DEV)
    nbytes = k * p * p * 3
    host = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
    dev_buf = torch.empty(nbytes, dtype=torch.uint8, device=DEV)

    def whole_then_slice():
        return advanced_indexing(image.to(DEV, non_blocking=True), off_dev, p, p, "HWC")

    fns = {
        "zoomkern": lambda: zk.gather_patches(image, off, (p, p), layout="HWC", device=DEV),
        "copy_whole_image_then_index": whole_then_slice,
        "pinned_h2d_copy": lambda: dev_buf.copy_(host, non_blocking=True),
    }
    assert torch.equal(fns["zoomkern"](), whole_then_slice())
    t = _util.medians(fns, rounds=1 if quick else 20, device=DEV)
    res = _util.result(
        f"GPU gather from pinned 1x{side}x{side}x3 u8 HWC, {k} patches {p}x{p}",
        "gather",
        t,
        nbytes,
        {"pinned_h2d_copy": "rate vs pinned H2D copy"},
        device="cpu",
        **{f"peak_bytes_{n}": _util.peak_memory(f, DEV) for n, f in fns.items()},
    )
    res["rate_fraction"] = res["ratio"]["pinned_h2d_copy"]
    _record(benchmark, res, fns["zoomkern"])


def test_write_summary():
    table = _util.fmt_table(SUMMARY)
    info = f"Machine: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    notes = "\n".join(f"- {r['case']}: {r['note']}" for r in SUMMARY if r.get("note"))
    text = f"{info}\n\n{table}\n\n{notes}\n"
    path = os.environ.get("ZOOMKERN_GPU_SUMMARY", os.path.join(os.path.dirname(__file__), "gpu_summary.md"))
    with open(path, "w") as f:
        f.write(text)
    print("\n" + text)
