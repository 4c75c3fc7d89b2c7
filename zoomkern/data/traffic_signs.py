"""The Swedish Traffic Signs speed-limit task (Larsson & Felsberg 2011, as the attention-sampling paper
uses it): classify 960x1280 road photos as EMPTY, 50_SIGN, 70_SIGN or 80_SIGN.

Layout: ``root/Set1`` (train) and ``root/Set2`` (test), each with ``annotations.txt`` and its JPEG images
(directly inside or in sub-folders such as ``Set1Part0/``). One annotation line per image::

    NAME.jpg:SIGN;SIGN;...      SIGN = VISIBILITY, x1, y1, x2, y2, TYPE, NAME   or   MISC_SIGNS

Label filter (the attention-sampling paper's code): MISC_SIGNS are ignored; an image with no sign left is
EMPTY; otherwise only the 50/70/80 speed limits are kept, sorted by visibility (VISIBLE < BLURRED <
SIDE_ROAD < OCCLUDED) then larger box first; the image is dropped if none is left or the first is not
VISIBLE, and is labelled with the first.

Quirks of the real files handled here: numbers with one stray trailing character (``482.26l``, the
character is dropped, as the reference code does), CRLF line ends, empty annotations (``NAME.jpg:``),
a trailing ``;``. Box corners: the attention-sampling code reads the four numbers as x_max, y_max, x_min,
y_min (in the real files the first corner is usually the lower right one). We store each box as
(x_min, y_min, x_max, y_max) = (min, min, max, max) of the two corners and rank by the area
|x1 - x2| * |y1 - y2|, which is the same number whichever corner comes first, so both readings give the
same labels.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._image import DataError, ImageFileDataset
from .splits import kfold_indices

CLASSES = ["EMPTY", "50_SIGN", "70_SIGN", "80_SIGN"]
VISIBILITY = ["VISIBLE", "BLURRED", "SIDE_ROAD", "OCCLUDED"]
SIZE = (960, 1280)
SETS = {"train": "Set1", "test": "Set2"}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class Sign(NamedTuple):
    visibility: str
    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max
    type: str
    name: str

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def parse_number(text: str) -> float:
    """'482.26' -> 482.26; '482.26l' -> 482.26 (one stray trailing character dropped); else ValueError."""
    t = text.strip()
    m = _NUMBER.match(t)
    if m is None or len(t) - m.end() > 1:
        raise ValueError(f"not a number: {text.strip()!r}")
    return float(m.group(0))


def parse_sign(text: str) -> Sign | None:
    """One sign; None for MISC_SIGNS. ValueError says what is wrong."""
    text = text.strip()
    if text == "MISC_SIGNS":
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 7:
        raise ValueError(f"sign {text!r}: expected 'VISIBILITY, x1, y1, x2, y2, TYPE, NAME' (7 fields)")
    if parts[0] not in VISIBILITY:
        raise ValueError(f"sign {text!r}: visibility {parts[0]!r} is not one of {VISIBILITY}")
    x1, y1, x2, y2 = (parse_number(p) for p in parts[1:5])
    return Sign(parts[0], (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), parts[5], parts[6])


def parse_annotations(path, errors: list | None = None) -> list[tuple[str, list[Sign], int]]:
    """[(image name, signs without MISC_SIGNS, line number)] of an annotations.txt. A line that does not
    parse raises DataError naming file and line, or with ``errors`` (a list) is appended and skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file missing")
    out = []
    for n, line in enumerate(path.read_bytes().decode("utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        name, sep, rest = line.partition(":")
        try:
            if not sep or not name.strip():
                raise ValueError("expected 'NAME.jpg:SIGN;SIGN;...'")
            signs = [parse_sign(s) for s in rest.split(";") if s.strip()]
        except ValueError as e:
            msg = f"{path}:{n}: {e} in line {line[:120]!r}"
            if errors is None:
                raise DataError(msg) from None
            errors.append(msg)
            continue
        out.append((name.strip(), [s for s in signs if s is not None], n))
    return out


def label_of(signs: list[Sign]) -> int | None:
    """The class index of an image from its signs (MISC_SIGNS already removed); None: drop the image."""
    if not signs:
        return 0
    kept = [s for s in signs if s.name in CLASSES[1:]]
    kept.sort(key=lambda s: (VISIBILITY.index(s.visibility), -s.area))  # stable: file order breaks ties
    if not kept or kept[0].visibility != "VISIBLE":
        return None
    return CLASSES.index(kept[0].name)


def index_images(folder: Path) -> dict[str, Path]:
    """name -> path of every .jpg under ``folder`` (the Set1Part0/ sub-folders of the download too)."""
    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file():
            found.setdefault(p.name, p)
    return found


def read_split(root, split: str, errors: list | None = None):
    """(paths, labels, signs, dropped) of a split, after the filter. Missing images are errors."""
    if split not in SETS:
        raise ValueError(f"split={split!r}: must be 'train' or 'test'")
    folder = Path(root) / SETS[split]
    ann = folder / "annotations.txt"
    if not ann.is_file():
        raise FileNotFoundError(f"{ann}: annotation file missing (expected {root}/Set1 and {root}/Set2)")
    images = index_images(folder)
    paths, labels, signs, dropped = [], [], [], 0
    for name, s, n in parse_annotations(ann, errors):
        if name not in images:
            msg = f"{ann}:{n}: names {name}, which is missing under {folder}"
            if errors is None:
                raise DataError(msg)
            errors.append(msg)
            continue
        y = label_of(s)
        if y is None:
            dropped += 1
            continue
        paths.append(images[name])
        labels.append(y)
        signs.append(s)
    return paths, labels, signs, dropped


class TrafficSigns(ImageFileDataset):
    """Set1 (``split="train"``) or Set2 (``"test"``) after the speed-limit filter (module docstring).

    Items: (image (3, 960, 1280) uint8 RGB, lowres at ``scale``, label in 0..3). ``signs[i]`` are the
    image's annotated signs (MISC_SIGNS removed); ``n_dropped`` how many annotated images the filter
    dropped. Images are decoded per access (a split is gigabytes decoded); ``cache=True`` keeps them.

    K-fold cross-validation over Set1 (the download has no fold files): with ``fold`` (1..``folds``),
    ``split="train"`` is Set1 without fold ``fold`` and ``split="valid"`` is that fold; the folds are
    stratified by label and deterministic for ``seed`` (zk.data.kfold_indices)."""

    def __init__(self, root, split: str = "train", *, scale: float = 0.25, transform=None,
                 cache: bool = False, size: tuple[int, int] | None = SIZE, fold: int | None = None,
                 folds: int = 10, seed: int = 0):  # fmt: skip
        if fold is None and split == "valid":
            raise ValueError("split='valid' needs a fold (k-fold cross-validation over Set1)")
        if fold is not None and split not in ("train", "valid"):
            raise ValueError(
                f"split={split!r} with fold={fold}: the folds split Set1 into 'train' and 'valid'"
            )
        if fold is not None and not (isinstance(fold, int) and 1 <= fold <= folds):
            raise ValueError(f"fold={fold!r}: folds are numbered 1..{folds}")
        which = "train" if fold is not None else split
        paths, labels, self.signs, self.n_dropped = read_split(root, which)
        if not paths:
            raise DataError(f"{Path(root) / SETS[which]}: no image left after the speed-limit filter")
        if fold is not None:
            tr, va = kfold_indices(len(paths), folds, fold - 1, seed=seed, labels=labels)
            keep = (tr if split == "train" else va).tolist()
            paths, labels, self.signs = (
                [paths[i] for i in keep],
                [labels[i] for i in keep],
                [self.signs[i] for i in keep],
            )
        self.fold, self.folds = fold, folds
        super().__init__(paths, labels, CLASSES, scale=scale, transform=transform, cache=cache, size=size)
        self.root, self.split = Path(root), split

    def object_boxes(self, i: int) -> np.ndarray:
        """(k, 4) int64 y0, x0, y1, x1 (half-open, pixels) of image i's annotated speed-limit signs, for
        the patch diagnosis (which share of the patches land on a sign); (0, 4) on EMPTY images."""
        b = [s.box for s in self.signs[i] if s.name in CLASSES[1:]]
        out = np.zeros((len(b), 4), np.int64)
        for k, (x0, y0, x1, y1) in enumerate(b):
            out[k] = math.floor(y0), math.floor(x0), math.ceil(y1), math.ceil(x1)
        return out
