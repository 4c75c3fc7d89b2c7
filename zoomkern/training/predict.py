"""Apply a trained model to new images: any format zk.io opens, one image at a time, read patch by patch.

The model is rebuilt from the configuration stored in the checkpoint (``build_model``), so a prediction
needs only the checkpoint and the images.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time

import torch

from ..io.source import scaled_size
from . import checkpoint
from .config import TrainConfig, build_model


def load_model(path: str, device="cpu"):
    """(model in eval mode on ``device``, TrainConfig) from a checkpoint written by the training loop."""
    state = checkpoint.load(path)
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"checkpoint {path!r} has no model or config (not written by zoomkern training)")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in state["config"].items() if k in names})
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg


def expand_inputs(items) -> list[str]:
    """Files as given; a directory stands for the files in it that zk.io opens (sorted, not recursive)."""
    from .. import io

    out = []
    for item in items:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, f)
                for f in os.listdir(item)
                if f.lower().endswith(io.EXTENSIONS) and os.path.isfile(os.path.join(item, f))
            )
            if not found:
                raise FileNotFoundError(
                    f"{item}: no image of a supported format ({', '.join(io.EXTENSIONS)})"
                )
            out += found
        elif os.path.isfile(item):
            out.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or directory")
    return out


def predict_one(model, cfg: TrainConfig, path: str, *, tissue: bool, device="cpu"):
    """(probabilities (n_classes,), model output dict, low view (C, h, w), source) for one image."""
    from .. import io
    from ..data.slides import tissue_mask

    src = io.open(path)
    want = cfg.in_channels or 1
    if src.shape[0] != want:
        raise ValueError(f"{path}: {src.shape[0]} channel(s), but the model was trained on {want}")
    low = src.lowres(scaled_size(src.shape[1:], cfg.scale))
    mask = tissue_mask(low)[None] if tissue else None
    with torch.no_grad():
        out = model([src], low[None].to(device), mask=mask)
    probs = torch.softmax(out["logits"].float(), 1)[0].cpu()
    return probs, out, low, src


def predict_paths(model, cfg: TrainConfig, paths, *, out_csv: str, plot_dir: str | None = None,
                  tissue: bool | None = None, device="cpu", progress: bool = True) -> list[dict]:  # fmt: skip
    """Predict every image of ``paths``; writes ``out_csv`` (image, predicted, p_0..p_{n-1}, seconds) and,
    with ``plot_dir``, ``<plot_dir>/<image name>.png`` attention overlays. ``tissue``: restrict stage I to
    the Otsu tissue mask (default: when the model was trained on slides)."""
    from tqdm import tqdm

    from .plot import plot_one

    if tissue is None:
        tissue = getattr(cfg, "dataset", "") == "slides"
    if plot_dir:
        os.makedirs(plot_dir, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(out_csv)), exist_ok=True)
    rows = []
    with open(out_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "predicted"] + [f"p_{c}" for c in range(cfg.n_classes)] + ["seconds"])
        for path in tqdm(paths, desc="predict", unit="image", file=sys.stderr, disable=not progress):
            t0 = time.perf_counter()
            probs, out, low, src = predict_one(model, cfg, path, tissue=tissue, device=device)
            secs = time.perf_counter() - t0
            row = dict(image=path, predicted=int(probs.argmax()), probs=probs.tolist(), seconds=secs)
            w.writerow([path, row["predicted"], *(f"{p:.6f}" for p in row["probs"]), f"{secs:.3f}"])
            fh.flush()
            if plot_dir:
                name = os.path.splitext(os.path.basename(path))[0] + ".png"
                row["plot"] = plot_one(model, out, low, src.shape[1:], os.path.join(plot_dir, name),
                                       source=src,
                                       title=f"{os.path.basename(path)}: predicted {row['predicted']} "
                                             f"(p = {max(row['probs']):.2f})")  # fmt: skip
            rows.append(row)
    return rows
