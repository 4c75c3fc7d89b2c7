"""A generated stand-in for the Swedish Traffic Signs set, in its on-disk layout (``Set1/``, ``Set2/``, JPEG
images, ``annotations.txt``), for measuring the traffic-sign preset without the download.

Each 960x1280 image is a road scene (sky, a grey road with lane marks, green verges, grain, a few dark
trees and houses with red-brown roofs along the horizon: red is not unique to the signs). A sign image
holds one speed-limit sign (red ring, white disc, black "50", "70" or "80") of 30-72 pixels across on a
pole at the roadside, roughly the sizes of the VISIBLE speed signs in the real photos (about 30-80 px;
an earlier version drew 24-44 px); EMPTY images hold none. Every image may also hold a blue round
"distractor" sign (no digits) annotated as ``MISC_SIGNS``. Classes are balanced by default (the real set
is mostly EMPTY: ``empty_share`` sets it). Annotation lines use the real corner order (lower-right corner
first) and the quirks of the real files (CRLF, a stray character after some numbers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

H, W = 960, 1280


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    img = np.empty((H, W, 3), np.float32)
    horizon = int(rng.integers(380, 460))
    img[:horizon] = np.array([150, 185, 225]) + rng.normal(0, 8, 3)
    img[horizon:] = np.array([80, 130, 70]) + rng.normal(0, 8, 3)
    ys = np.arange(horizon, H)
    half = (ys - horizon) * (W * 0.45 / (H - horizon)) + 20  # the road widens towards the camera
    cx = W / 2 + rng.normal(0, 40)
    xs = np.arange(W)
    road = np.abs(xs[None] - cx) < half[:, None]
    img[horizon:][road] = np.array([105, 105, 108]) + rng.normal(0, 4, 3)
    lane = (np.abs(xs[None] - cx) < 3 + half[:, None] * 0.01) & ((ys[:, None] // 30) % 2 == 0)
    img[horizon:][lane] = 235
    _clutter(img, rng, horizon)
    img += rng.normal(0, 5, img.shape).astype(np.float32)
    return img, horizon


def _clutter(img, rng, horizon: int) -> None:
    """Trees (dark green blobs) and houses (pale walls, red-brown roofs) standing on the horizon."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(np.rint(img).clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(2, 7))):
        x, rx, ry = rng.uniform(0, W), rng.uniform(20, 60), rng.uniform(30, 90)
        g = rng.uniform(0.7, 1.1)
        d.ellipse(
            (x - rx, horizon - 2 * ry, x + rx, horizon + 5), fill=tuple(int(v * g) for v in (40, 80, 35))
        )
    for _ in range(int(rng.integers(0, 3))):
        x, w, h = rng.uniform(0, W - 160), rng.uniform(60, 160), rng.uniform(40, 90)
        wall = tuple(int(v) for v in rng.choice([(225, 215, 190), (240, 240, 235), (220, 200, 120)]))
        d.rectangle((x, horizon - h, x + w, horizon + 3), fill=wall)
        roof = tuple(int(v + rng.normal(0, 10)) for v in (150, 45, 35))
        d.polygon(
            [(x - 8, horizon - h), (x + w + 8, horizon - h), (x + w / 2, horizon - h - 0.5 * h)], fill=roof
        )
    img[...] = np.asarray(pil, np.float32)


def _sign(img, rng, cx, cy, r, text, ring, face):
    from PIL import Image, ImageDraw, ImageFont

    pole = img[int(cy) : int(cy) + 4 * r, int(cx) - 2 : int(cx) + 2]
    pole[...] = 90
    pil = Image.fromarray(np.rint(img).clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=ring)
    inner = r * 0.72
    d.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=face)
    if text:
        font = ImageFont.load_default(size=max(8, int(r * 0.9)))
        d.text((cx, cy), text, fill=(10, 10, 10), font=font, anchor="mm")
    img[...] = np.asarray(pil, np.float32)


def _corners(cx, cy, r, rng) -> str:
    # lower-right corner first, as in the real files; now and then a stray character after a number
    nums = [f"{v:.2f}" for v in (cx + r, cy + r, cx - r, cy - r)]
    if rng.random() < 0.2:
        nums[0] += "l"
    return ", ".join(nums)


def render(rng: np.random.Generator, label: int, distractor: bool):
    """(960, 1280, 3) uint8 image and its annotation text (after 'NAME.jpg:')."""
    img, _ = _scene(rng)
    signs = []
    side = rng.choice([-1, 1])
    if distractor:
        r = int(rng.integers(12, 22))
        cx, cy = W / 2 - side * rng.uniform(350, 560), rng.uniform(250, 420)
        _sign(img, rng, cx, cy, r, "", (30, 60, 170), (40, 90, 200))
        signs.append("MISC_SIGNS")
    if label:
        r = int(rng.integers(15, 37))  # 30-72 px across
        cx, cy = W / 2 + side * rng.uniform(350, 560), rng.uniform(260, 470)
        _sign(img, rng, cx, cy, r, ("50", "70", "80")[label - 1], (200, 20, 25), (245, 245, 245))
        signs.append(f"VISIBLE, {_corners(cx, cy, r, rng)}, SPEED_LIMIT, {(50, 70, 80)[label - 1]}_SIGN")
    return np.rint(img).clip(0, 255).astype(np.uint8), ";".join(signs)


def make_traffic_like(root, n_train: int = 200, n_test: int = 100, *, empty_share: float = 0.25,
                      seed: int = 0, progress: bool = True) -> Path:  # fmt: skip
    """Write ``root/Set1`` (n_train images) and ``root/Set2`` (n_test); returns the root."""
    from PIL import Image
    from tqdm.auto import tqdm

    root = Path(root)
    for split, n, sid in (("Set1", n_train, 0), ("Set2", n_test, 1)):
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, sid])
        n_empty = round(empty_share * n)
        labels = rng.permutation(np.concatenate([np.zeros(n_empty, int), 1 + np.arange(n - n_empty) % 3]))
        lines = []
        for i in tqdm(range(n), desc=f"traffic-like {split}", unit="img", disable=not progress):
            r = np.random.default_rng([seed, sid, i])
            img, ann = render(r, int(labels[i]), bool(r.random() < 0.5))
            name = f"img{sid}_{i:05d}.jpg"
            Image.fromarray(img).save(d / name, quality=90)
            lines.append(f"{name}:{ann}")
        (d / "annotations.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return root
