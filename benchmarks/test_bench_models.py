"""Whole models, one training step (forward, backward, AdamW), per sample: Zoom-In against what a user
would otherwise train on a megapixel image, a CNN on the full image or on the low-resolution view, and
the one-stage ATS. The models are the ones ``python/train.py`` builds from the paper preset (the demo
preset's small canvas in the CI smoke run), so these are the training script's costs.

Peak memory is the resident-set growth of the process during one step (CPU, VmHWM; see _util), or the
allocator's peak on CUDA; both per sample.
"""

from __future__ import annotations

import _util
import pytest
import torch
import torch.nn.functional as F

import zoomkern as zk
from zoomkern.training import PRESETS, TrainConfig, build_model

MODELS = ("zoomin", "ats", "cnn_lowres", "cnn_full")
BATCH = {"full": 8, "quick": 2}


def _batch(cfg: TrainConfig, B: int, device):
    g = torch.Generator().manual_seed(0)
    H, W = cfg.size
    # Sparse ink on black, like Megapixel MNIST: the ink prior then has something to steer by.
    image = ((torch.rand(B, 1, H, W, generator=g) ** 16) * 255).to(torch.uint8)
    low = F.interpolate(image.float(), scale_factor=cfg.scale, mode="area").to(torch.uint8)
    if torch.device(device).type == "cuda":
        # The images stay on the host as zk.io sources, as the training loader hands them out: the
        # attention models send only their tiles and patches across PCIe (through the pinned staging
        # buffer), the full-image CNN sends whole images each step. The low views are pinned.
        image, low = [zk.io.from_array(im) for im in image], low.pin_memory()
    return image, low, torch.arange(B, device=device) % cfg.n_classes


def bytes_to_device(fns: dict, low: torch.Tensor, B: int) -> dict:
    """Bytes each model's step moves host -> device per sample: what crossed the staging buffer (patches,
    tile views, whole images for cnn_full) plus the low-resolution views (all but cnn_full read them)."""
    from zoomkern.io.staging import STAGING

    out = {}
    for n, f in fns.items():
        before = STAGING.bytes_to_device
        f()
        torch.cuda.synchronize()
        low_bytes = low.numel() * low.element_size() if n != "cnn_full" else 0
        out[n] = (STAGING.bytes_to_device - before + low_bytes) / B
    return out


def train_step(model, opt, image, low, y):
    def step():
        out = model(image, low, labels=y)
        loss = F.cross_entropy(out["logits"], y) + out["aux_loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def measure(quick: bool, device="cpu"):
    """{model: step fn} and one result dict: seconds and peak bytes per sample for each model."""
    cfg = TrainConfig(**PRESETS["demo" if quick else "paper"])
    B = BATCH["quick" if quick else "full"]
    image, low, y = _batch(cfg, B, device)
    fns = {}
    for name in MODELS:
        cfg.model = name
        torch.manual_seed(0)
        model = build_model(cfg).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        fns[name] = train_step(model, opt, image, low, y)
    t = _util.medians(fns, rounds=1 if quick else 5, warmup=1, device=device)
    peaks = {n: _util.peak_memory(f, device) for n, f in fns.items()}
    h2d = bytes_to_device(fns, low, B) if torch.device(device).type == "cuda" else None
    case = f"train step {B}x1x{cfg.size[0]}x{cfg.size[1]} u8 ({'demo' if quick else 'paper'} preset)"
    res = dict(
        case=case,
        device=str(device),
        batch=B,
        sec_per_sample={n: s / B for n, s in t.items()},
        peak_mib_per_sample={n: (p / B / 2**20 if p is not None else None) for n, p in peaks.items()},
        h2d_bytes_per_sample=h2d,
    )
    return fns, res


def fmt_table(res: dict) -> str:
    zs, zm = res["sec_per_sample"]["zoomin"], res["peak_mib_per_sample"]["zoomin"]
    lines = [
        f"{res['case']}, {res['device']}:\n",
        "| model | ms / sample | peak MiB / sample | Zoom-In speed vs it | Zoom-In memory vs it |"
        + (" host-to-device KiB / sample |" if res.get("h2d_bytes_per_sample") else ""),
        "|---|---|---|---|---|" + ("---|" if res.get("h2d_bytes_per_sample") else ""),
    ]
    for n in MODELS:
        s, m = res["sec_per_sample"][n], res["peak_mib_per_sample"][n]
        mem = f"{m:.1f}" if m is not None else "n/a"
        mem_ratio = f"{zm / m:.2f}x" if m and zm is not None else "n/a"
        row = f"| {n} | {1e3 * s:.1f} | {mem} | {s / zs:.2f}x | {mem_ratio} |"
        if res.get("h2d_bytes_per_sample"):
            row += f" {res['h2d_bytes_per_sample'][n] / 1024:.0f} |"
        lines.append(row)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def measured(request):
    return measure(_util.quick(request.config))


@pytest.mark.parametrize("model", MODELS)
def test_train_step(benchmark, measured, model):
    fns, res = measured
    benchmark.group = res["case"]
    benchmark.extra_info.update(
        model=model,
        sec_per_sample_interleaved=res["sec_per_sample"][model],
        peak_mib_per_sample=res["peak_mib_per_sample"][model],
        zoomin_speed_vs_this=res["sec_per_sample"][model] / res["sec_per_sample"]["zoomin"],
    )
    loss = benchmark.pedantic(fns[model], rounds=3, iterations=1)  # once under --benchmark-disable
    assert torch.isfinite(loss), f"{model}: training step gave a non-finite loss"


@pytest.mark.gpu
def test_train_step_gpu(request):
    _, res = measure(_util.quick(request.config), device="cuda")
    print("\n" + fmt_table(res))
