"""The scaling benchmark's worker: one fresh process per measured point (model, mode, batch, side).

The process builds its inputs and model, trims the heap, records its idle resident set and address
space, then caps the address space (``RLIMIT_AS`` = idle VmSize + the cap) so that a step that needs
more fails with an allocation error, which is reported as out of memory at that cap. Each step it is
asked for: ``malloc_trim``, reset the high-water mark (``5 > /proc/self/clear_refs``), read VmRSS, run
the step, read VmHWM; the step's peak memory is VmHWM - VmRSS before it.

Messages to the parent (over a multiprocessing pipe): ("ready", info), then per "step" command either
("ok", seconds, peak_bytes, finite) or ("oom" | "error", message).
"""

from __future__ import annotations

import ctypes
import re
import resource
import time
import traceback

import _scaling_data as D
import tifffile
import torch
import torch.nn.functional as F

import zoomkern as zk  # noqa: F401  (registers the ops before the fork: children start warm)
import zoomkern.io as zio
from zoomkern import models

OOM_MARKS = ("can't allocate memory", "Cannot allocate memory", "Unable to allocate", "bad_alloc")


def vm_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def trim() -> None:
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def inputs(cfg: dict, B: int, path: str):
    """(image, low): the image as a (B, 3, S, S) uint8 tensor (sides below D.TIFF_FROM: level 0 decoded
    into RAM) or as a list of B zk.io sources, and the (B, 3, L, L) uint8 low views from the file's
    pyramid (given to every model, as a loader would: the low view is data, not part of the step)."""
    srcs = [zio.open(path) for _ in range(B)]  # B slides: each its own handle and tile cache
    if tuple(srcs[0].shape) != (3, cfg["side"], cfg["side"]):
        raise ValueError(
            f"{path}: shape {tuple(srcs[0].shape)}, the benchmark needs (3, {cfg['side']}, {cfg['side']})"
        )
    lv = srcs[0].lowres((cfg["low_view"], cfg["low_view"])).unsqueeze(0).repeat(B, 1, 1, 1)
    if cfg["source"] == "tiff":
        return srcs, lv
    one = torch.from_numpy(tifffile.imread(path, level=0)).permute(2, 0, 1).contiguous()
    return one.unsqueeze(0).repeat(B, 1, 1, 1), lv


def make_model(name: str, cfg: dict) -> torch.nn.Module:
    s1 = cfg["s1"]
    if name == "zoomin":
        return models.ZoomIn(
            2,
            3,
            tile_size=cfg["tile_size"],
            s1=s1,
            s2=cfg["s2"],
            sub_grid=cfg["sub_grid"],
            patch_size=cfg["patch_size"],
            n_tiles=cfg["n_tiles"],
            n_sub=cfg["n_sub"],
        )
    if name == "ats":
        return models.ATS(2, 3, s1=s1, patch_size=cfg["patch_size"], n_patches=cfg["n_patches"])
    if name == "cnn_lowres":
        return models.CNNLowRes(2, 3, s1=s1)
    if name == "cnn_full":
        return models.CNNFull(2, 3)
    raise ValueError(f"unknown model {name!r}")


def full_image(image) -> torch.Tensor:
    """The full-image CNN needs the whole image as one tensor. From sources it reads all of level 0
    inside its step, in bands of tile rows straight into one float32 [0, 1] tensor (which the CNN then
    uses as is): the smallest footprint a full-image CNN can have, and that allocation is its cost."""
    if isinstance(image, torch.Tensor):
        return image
    C, H, W = image[0].shape
    out = torch.empty((len(image), C, H, W), dtype=torch.float32)
    band = 1024
    for b, src in enumerate(image):
        for y in range(0, H, band):
            h = min(band, H - y)
            rows = src.read_patches(torch.tensor([[y, 0]]), (h, W))[0]
            out[b, :, y : y + h].copy_(rows).div_(255.0)
    return out


def make_step(spec: dict):
    cfg = D.config(spec["side"])
    B = spec["batch"]
    torch.manual_seed(0)
    image, low = inputs(cfg, B, spec.get("path"))
    model = make_model(spec["model"], cfg)
    y = torch.arange(B) % 2
    full = spec["model"] == "cnn_full"

    if spec["mode"] == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step():
            out = model(full_image(image) if full else image, low, labels=y)
            loss = F.cross_entropy(out["logits"], y) + out["aux_loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return bool(torch.isfinite(loss))

    else:
        model.eval()

        def step():
            with torch.no_grad():
                return bool(torch.isfinite(model(full_image(image) if full else image, low)["logits"]).all())

    return step


def main(conn, spec: dict) -> None:
    """Entry point of the point's process (run by multiprocessing, see test_bench_scaling)."""
    try:
        torch.set_num_threads(spec["threads"])
        step = make_step(spec)
        trim()
        idle_rss, idle_vm = vm_kib("VmRSS") * 1024, vm_kib("VmSize") * 1024
        cap = idle_vm + int(spec["cap_gib"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        conn.send(("ready", dict(idle_rss=idle_rss, idle_vmsize=idle_vm, rlimit_as=cap)))
        while conn.recv() == "step":
            trim()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = vm_kib("VmRSS")
            t0 = time.perf_counter()
            finite = step()
            t = time.perf_counter() - t0
            conn.send(("ok", t, (vm_kib("VmHWM") - before) * 1024, finite))
    except BaseException as e:  # noqa: BLE001  (everything goes back to the parent, which decides)
        msg = f"{type(e).__name__}: {e}"
        oom = isinstance(e, MemoryError) or any(m in msg for m in OOM_MARKS)
        try:
            conn.send(("oom" if oom else "error", msg[:400] if oom else traceback.format_exc()[-2000:]))
        except (BrokenPipeError, OSError):
            pass
