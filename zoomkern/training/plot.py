"""Where did the model look? Both attention maps and the sampled patches over a few test images."""

from __future__ import annotations

import numpy as np
import torch

from ..io.source import scaled_size


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
    if hasattr(dataset, "collate"):  # slides: sizes differ, a mask; each panel over its own low view
        return _plot_collated(model, dataset, path, n, device)
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
        x = image.lowres(scaled_size((H, W), min(1.0, max_side / max(H, W))))
    if x.shape[0] == 1:
        return x[0].float().numpy()
    top = {torch.uint8: 255.0, torch.uint16: 65535.0}.get(x.dtype, 1.0)
    return (x[:3].permute(1, 2, 0).float() / top).clamp(0, 1).numpy()


def _read_metrics(csv_path: str):
    """(rows, col): the rows of a metrics.csv and ``col(name)`` -> float array (NaN where missing)."""
    import csv

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

    return rows, col


def plot_curves(runs: dict[str, str], path: str, title: str = "") -> str:
    """Test accuracy per epoch of several runs in one figure: ``runs`` maps a legend label to a
    metrics.csv. The sampled training accuracy is drawn dashed in the same colour. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for k, (label, csv_path) in enumerate(runs.items()):
        rows, col = _read_metrics(csv_path)
        if not rows:
            raise ValueError(f"{csv_path}: no epochs logged")
        ep, c = col("epoch") + 1, f"C{k}"
        ax.plot(ep, 100 * col("test_acc"), marker="o", ms=3, color=c, label=f"{label}: test")
        ax.plot(ep, 100 * col("train_acc"), ls="--", color=c, alpha=0.6, label=f"{label}: train (sampled)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_diagnosis(csv_path: str, path: str) -> str | None:
    """Per-epoch curves from metrics.csv: accuracy, the share of patches on digit ink and on noise ink
    (training draws and evaluation patches), and each stage's attention entropy over log(cells).
    Returns ``path``, or None when the CSV has no diagnosis columns (a data set without object boxes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, col = _read_metrics(csv_path)
    share = [("train_patch_digit", "train: digit ink"), ("train_patch_noise", "train: noise"),
             ("test_patch_digit", "test: digit ink"), ("test_patch_noise", "test: noise")]  # fmt: skip
    if rows and not np.isnan(col("train_patch_object")).all():  # data sets with object boxes (signs)
        share = [("train_patch_object", "train: patches on an object"),
                 ("test_patch_object", "test: patches on an object"),
                 ("train_image_object", "train: images with an object hit"),
                 ("test_image_object", "test: images with an object hit")]  # fmt: skip
    elif not rows or np.isnan(col("train_patch_digit")).all():
        return None
    ep = col("epoch") + 1
    entropy = [("train_entropy1", "stage I, train"), ("test_entropy1", "stage I, test"),
               ("train_entropy2", "stage II, train"), ("test_entropy2", "stage II, test")]  # fmt: skip
    panels = [
        ("accuracy", [("train_acc", "train (sampled)"), ("test_acc", "test")]),
        ("share of patches", share),
        ("attention entropy / log(cells)", entropy),
    ]
    # does stage I rank the evidence above uniform, does the teacher know it, do attention units die
    learn = [("test_attn1_target", "stage I mass on target tiles (test)"),
             ("test_attn1_uniform", "... under uniform attention"),
             ("train_teacher_target", "teacher's tiles on targets"),
             ("train_dead1", "dead units, stage I net"),
             ("train_dead2", "dead units, stage II net")]  # fmt: skip
    if any(not np.isnan(col(name)).all() for name, _ in learn):
        panels.append(("does the attention learn?", learn))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.7 * len(panels), 3.8))
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


def plot_one(model, out: dict, low: torch.Tensor, size, path: str, *, i: int = 0, title: str = "",
             source=None, n_patches: int = 8) -> str:  # fmt: skip
    """Write a PNG of sample ``i`` of a model output ``out`` over its low view ``low`` (C, h, w) (the
    full-resolution image is never read: a slide would not fit); ``size`` (H, W) is the level-0 size that
    the offsets refer to. Same colours as plot_attention; patches too small to see at this scale are
    drawn as green dots. With ``source`` (a zk.io Source), a row below shows the first ``n_patches``
    patches as read from level 0. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    H, W = int(size[0]), int(size[1])
    offs = out["patch_offsets"][i][:n_patches].cpu()
    k = offs.shape[0] if source is not None else 0
    h_main = 7.0 * H / W
    fig = plt.figure(figsize=(7.0, h_main + 0.6 + (7.0 / max(k, 1) + 0.3 if k else 0)))
    grid = fig.add_gridspec(2 if k else 1, max(k, 1), height_ratios=[h_main, 7.0 / max(k, 1)] if k else None)
    ax = fig.add_subplot(grid[0, :])
    _panel(ax, model, out, i, low, (H, W))
    legend = "red: stage-I attention, blue: stage-II in drawn tiles (yellow), green: patches read"
    ax.set_title(f"{title}\n{legend}" if title else legend, fontsize=8)
    if k:
        patches = source.read_patches(offs.to(torch.int64), model.patch_size)  # (k, C, ph, pw)
        for j in range(k):
            pa = fig.add_subplot(grid[1, j])
            img = patches[j].permute(1, 2, 0).numpy()
            pa.imshow(
                img[..., 0] if img.shape[-1] == 1 else img[..., :3],
                cmap="gray" if img.shape[-1] == 1 else None,
            )
            pa.axis("off")
        fig.text(0.5, 0.005, f"the first {k} full-resolution patches read", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _panel(ax, model, out: dict, i: int, low, size) -> None:
    """Sample ``i`` of ``out`` drawn over its low view ``low`` (C, h, w), in level-0 coordinates."""
    from matplotlib.patches import Rectangle

    H, W = size
    low = torch.as_tensor(low).float()
    low = low / 255.0 if low.max() > 1.5 else low
    bg = low.permute(1, 2, 0).clamp(0, 1).numpy()
    if bg.shape[-1] == 1:
        ax.imshow(bg[..., 0], cmap="gray", extent=(0, W, H, 0))
    else:
        ax.imshow(bg[..., :3], extent=(0, W, H, 0))
    a = out["attention"][i].float().cpu().numpy()
    gh, gw = a.shape
    th, tw = getattr(model, "tile_size", (H / gh, W / gw))
    # the attention grid covers ceil(H / tile) tiles: its extent may pass the image border
    ext = (0, gw * tw, gh * th, 0) if "tile_offsets" in out else (0, W, H, 0)
    ax.imshow(a / max(a.max(), 1e-12), cmap="Reds", alpha=0.4, extent=ext, interpolation="nearest")
    if "tile_offsets" in out:
        _draw_zoomin(ax, out, i, model, Rectangle)
    ph, pw = model.patch_size
    offs = out["patch_offsets"][i].cpu().numpy()
    if pw < W / 150:  # a box would be under a pixel wide
        ax.scatter(
            offs[:, 1] + pw / 2, offs[:, 0] + ph / 2, s=9, c="lime", edgecolors="black", linewidths=0.4
        )
    else:
        for y, x in offs.tolist():
            ax.add_patch(Rectangle((x, y), pw, ph, fill=False, edgecolor="lime", linewidth=1.2))
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.axis("off")


def _plot_collated(model, dataset, path: str, n: int, device) -> str:
    """plot_attention for data sets with their own collate (slides: sources of different sizes, a mask):
    each panel over its own low view, no full-resolution image read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = dataset.collate([dataset[i] for i in range(n)])
    image, low, labels = batch[:3]
    kw = dict(mask=batch[3]) if len(batch) > 3 else {}
    model.eval()
    with torch.no_grad():
        out = model(image, low.to(device), **kw)
    pred = out["logits"].argmax(1).cpu().tolist()
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        H, W = image[i].shape[1:]
        h, w = dataset.low_size(image[i]) if hasattr(dataset, "low_size") else low.shape[-2:]
        _panel(ax, model, out, i, low[i, :, :h, :w], (H, W))
        ax.set_title(f"label {int(labels[i])}  predicted {pred[i]}")
    fig.suptitle("red: stage-I attention, blue: stage-II attention in drawn tiles (yellow), green: patches")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
