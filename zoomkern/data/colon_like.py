"""A generated stand-in for the colon-cancer set, written in either on-disk layout ``ColonCancer`` reads.

Each image is 500x500 RGB: a pink, textured "tissue" background strewn with small round pale-purple
"nuclei" (every image has them: distractors). Positive images also hold 3-6 gland-like clusters of 10-20
larger, darker, elongated "epithelial nuclei" (the tiny objects: 9-13 pixels long, about 1 pixel in the
1/10 low-resolution view; as in the real set, a positive image has many of them, not one). Label 1 iff
the image holds at least one of them.

Layouts: "csv" (``imgN.bmp`` + ``labels_histo_{train,valid}_fold_{k}.csv``, stratified folds 1..K) or
"download" (``Classification/imgN/imgN.bmp`` + ``imgN_epithelial.mat`` with the ``detection`` centres).
Deterministic for ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .splits import kfold_indices

SIZE = 500


def _disc(img, cy, cx, ry, rx, angle, colour, alpha):
    """Blend a filled ellipse into img (H, W, 3) float in place."""
    r = int(max(ry, rx)) + 2
    y0, y1 = max(0, int(cy) - r), min(img.shape[0], int(cy) + r + 1)
    x0, x1 = max(0, int(cx) - r), min(img.shape[1], int(cx) + r + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = (dx * c + dy * s) / rx, (-dx * s + dy * c) / ry
    m = np.clip(1.5 - np.sqrt(u * u + v * v), 0, 1)[..., None] * alpha  # a soft one-pixel edge
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - m) + np.asarray(colour) * m


def render(
    rng: np.random.Generator, positive: bool, n_nuclei=(40, 80), clusters=(3, 6), per_cluster=(10, 20)
):
    """(500, 500, 3) uint8 image and (n, 2) float (x, y) centres of its epithelial objects."""
    # background: a smooth pink field (a 10x10 random grid upsampled) plus fine grain
    coarse = rng.normal(0, 1, (11, 11))
    t = np.linspace(0, 10, SIZE)
    i0 = np.minimum(t.astype(int), 9)
    f = t - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    field = rows[:, i0] * (1 - f)[None] + rows[:, i0 + 1] * f[None]
    pink = np.array([225.0, 170.0, 200.0])
    img = pink + 12 * field[..., None] * np.array([1.0, 1.3, 0.8]) + rng.normal(0, 6, (SIZE, SIZE, 3))
    for _ in range(rng.integers(*n_nuclei, endpoint=True)):
        r = rng.uniform(2.5, 4.0)
        _disc(img, *rng.uniform(4, SIZE - 4, 2), r, r, 0.0, (150, 90, 175), rng.uniform(0.6, 0.9))
    centres = []
    if positive:
        for _ in range(rng.integers(*clusters, endpoint=True)):
            cy, cx = rng.uniform(30, SIZE - 30, 2)
            for _ in range(rng.integers(*per_cluster, endpoint=True)):
                y, x = np.clip(rng.normal((cy, cx), 24), 8, SIZE - 8)
                _disc(img, y, x, rng.uniform(2.5, 3.5), rng.uniform(4.5, 6.5), rng.uniform(0, np.pi),
                      (70, 30, 110), rng.uniform(0.85, 1.0))  # fmt: skip
                centres.append((x, y))
    return np.rint(img).clip(0, 255).astype(np.uint8), np.array(centres, np.float64).reshape(-1, 2)


# What positives hold: "clusters" (3-6 gland-like clusters of 10-20 objects, like the real set) or
# "sparse" (one to three objects, alone: a few dark nuclei among the normal ones, where a classifier that
# reads uniformly drawn patches sees no object in most images and the attention must find them).
OBJECTS = {"clusters": dict(clusters=(3, 6), per_cluster=(10, 20)),
           "sparse": dict(clusters=(1, 3), per_cluster=(1, 1))}  # fmt: skip


def make_colon_like(root, n: int = 100, *, folds: int = 10, layout: str = "csv", seed: int = 0,
                    positive_share: float = 0.5, objects: str = "clusters",
                    progress: bool = True) -> Path:  # fmt: skip
    """Write ``n`` images (``positive_share`` of them positive, rounded) under ``root``; returns the root.
    ``objects``: what a positive holds (see OBJECTS)."""
    if objects not in OBJECTS:
        raise ValueError(f"objects={objects!r}: one of {', '.join(OBJECTS)}")
    from PIL import Image
    from tqdm.auto import tqdm

    if layout not in ("csv", "download"):
        raise ValueError(f"layout={layout!r}: 'csv' or 'download'")
    if n < folds or folds < 2:
        raise ValueError(f"n={n}, folds={folds}: need folds >= 2 and n >= folds")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 7])
    labels = rng.permutation(np.arange(n) < round(positive_share * n)).astype(np.int64)
    names = [f"img{i + 1}" for i in range(n)]
    for i in tqdm(range(n), desc="colon-like", unit="img", disable=not progress):
        img, centres = render(np.random.default_rng([seed, 1, i]), bool(labels[i]), **OBJECTS[objects])
        if layout == "csv":
            Image.fromarray(img).save(root / f"{names[i]}.bmp")
        else:
            import scipy.io

            d = root / "Classification" / names[i]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{names[i]}.bmp")
            scipy.io.savemat(d / f"{names[i]}_epithelial.mat", {"detection": centres})
    if layout == "csv":
        for k in range(1, folds + 1):
            tr, va = kfold_indices(n, folds, k - 1, seed=seed, labels=labels)
            for split, idx in (("train", tr), ("valid", va)):
                lines = "".join(f"{names[i]}.bmp,{labels[i]}\n" for i in idx)
                (root / f"labels_histo_{split}_fold_{k}.csv").write_text(lines)
    return root
