"""Where did the model look? Both attention maps and the sampled patches over a few test images."""

from __future__ import annotations

import numpy as np
import torch


def plot_attention(model, dataset, path: str, n_images: int = 4, device="cpu") -> str:
    """Write a PNG: for each image, the stage-I map (ZoomIn: per tile; ATS: per cell) in red, the
    stage-II maps of the drawn tiles in blue inside their tiles, drawn tiles as yellow boxes and
    full-resolution patches as green boxes. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from ..training.batches import collate

    n = min(n_images, len(dataset))
    image, low, labels = collate([dataset[i] for i in range(n)])
    labels = labels.tolist()
    model.eval()
    with torch.no_grad():
        out = model(image, low.to(device))  # the image stays on the host: the model reads its patches
    pred = out["logits"].argmax(1).cpu().tolist()
    H, W = image[0].shape[-2:]
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(_picture(image[i]), cmap="gray", extent=(0, W, H, 0))  # RGB as RGB (colon, slides)
        a = out["attention"][i].float().cpu().numpy()
        ax.imshow(
            a / max(a.max(), 1e-12), cmap="Reds", alpha=0.35, extent=(0, W, H, 0), interpolation="nearest"
        )
        if "tile_offsets" in out:
            _draw_zoomin(ax, out, i, model, Rectangle)
        valid = out.get("patch_valid", torch.ones(out["patch_offsets"].shape[:2], dtype=torch.bool))[i]
        for y, x in out["patch_offsets"][i][valid.to(out["patch_offsets"].device)].cpu().tolist():
            ph, pw = model.patch_size
            ax.add_patch(Rectangle((x, y), pw, ph, fill=False, edgecolor="lime", linewidth=1.2))
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ax.set_title(f"label {labels[i]}  predicted {pred[i]}")
        ax.axis("off")
    if "tile_offsets" in out:
        legend = "red: stage-I attention, blue: stage-II attention in drawn tiles (yellow), green: patches"
    else:
        legend = "red: attention, green: the full-resolution patches read"
    fig.suptitle(legend)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _draw_zoomin(ax, out, i, model, Rectangle):
    th, tw = model.tile_size
    seen = set()
    for t, (y, x) in enumerate(out["tile_offsets"][i].cpu().tolist()):
        ax.add_patch(Rectangle((x, y), tw, th, fill=False, edgecolor="yellow", linewidth=1.0))
        if (y, x) in seen:  # a tile drawn twice: its map is already drawn
            continue
        seen.add((y, x))
        b = out["sub_attention"][i, t].float().cpu().numpy()
        rgba = np.zeros((*b.shape, 4))
        rgba[..., 2] = 1.0
        rgba[..., 3] = 0.6 * b / max(b.max(), 1e-12)
        ax.imshow(rgba, extent=(x, x + tw, y + th, y), interpolation="nearest")


def _picture(image, max_side: int = 1024) -> np.ndarray:
    """(h, w) or (h, w, 3) to show: a tensor image as it is, a source through its low-resolution levels
    (a slide is never read whole for a picture)."""
    if isinstance(image, torch.Tensor):
        x = image
    else:
        H, W = image.shape[1:]
        f = min(1.0, max_side / max(H, W))
        x = image.lowres((max(1, round(H * f)), max(1, round(W * f))))
    if x.shape[0] == 1:
        return x[0].float().numpy()
    top = {torch.uint8: 255.0, torch.uint16: 65535.0}.get(x.dtype, 1.0)
    return (x[:3].permute(1, 2, 0).float() / top).clamp(0, 1).numpy()


def plot_diagnosis(csv_path: str, path: str) -> str | None:
    """Per-epoch curves from metrics.csv: accuracy, the share of patches on digit ink and on noise ink
    (training draws and evaluation patches), and each stage's attention entropy over log(cells).
    Returns ``path``, or None when the CSV has no diagnosis columns (a data set without object boxes)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))

    def col(name):
        out = []
        for r in rows:
            try:
                out.append(float(r.get(name) or "nan"))
            except ValueError:
                out.append(float("nan"))
        return np.array(out)

    if not rows or np.isnan(col("train_patch_digit")).all():
        return None
    ep = col("epoch") + 1
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    share = [("train_patch_digit", "train: digit ink"), ("train_patch_noise", "train: noise"),
             ("test_patch_digit", "test: digit ink"), ("test_patch_noise", "test: noise")]  # fmt: skip
    entropy = [("train_entropy1", "stage I, train"), ("test_entropy1", "stage I, test"),
               ("train_entropy2", "stage II, train"), ("test_entropy2", "stage II, test")]  # fmt: skip
    panels = [
        ("accuracy", [("train_acc", "train (sampled)"), ("test_acc", "test")]),
        ("share of patches", share),
        ("attention entropy / log(cells)", entropy),
    ]
    for ax, (title, series) in zip(axes, panels, strict=True):
        for name, label in series:
            v = col(name)
            if not np.isnan(v).all():
                ax.plot(ep, v, marker="o", ms=3, label=label, ls="--" if name.startswith("train") else "-")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
