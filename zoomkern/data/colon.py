"""The colon-cancer histology set (CRCHistoPhenotypes, Sirinukunwattana et al. 2016): 100 H&E images of
500x500, label 1 iff the image holds at least one epithelial nucleus (the Zoom-In / MIL task).

Two on-disk layouts, both read by ``ColonCancer``:

(a) the Zoom-In code's: ``img1.bmp``..``img100.bmp`` beside ``labels_histo_{train,valid}_fold_{k}.csv``,
    rows ``imgN.bmp,label`` without a header. The folds are the files present. An image the CSV names is
    looked for in the root first, then at ``Classification/imgN/imgN.bmp``.
(b) the CRCHistoPhenotypes download: ``Classification/imgN/imgN.bmp`` with ``imgN_epithelial.mat`` (the
    centres of the epithelial nuclei under the key ``detection``, read with scipy.io.loadmat). Without fold
    CSVs the folds are stratified by label, deterministic for ``seed`` (``folds=10`` by default), numbered
    1..folds like the CSV folds.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._image import DataError, ImageFileDataset
from .splits import kfold_indices

CLASSES = ["negative", "positive"]
SIZE = (500, 500)
_CSV = re.compile(r"^labels_histo_(train|valid)_fold_(\d+)\.csv$")
_IMG = re.compile(r"^img(\d+)$")
SPLITS = ("train", "valid")


def _fail(errors, msg):
    if errors is None:
        raise DataError(msg)
    errors.append(msg)


def csv_folds(root) -> list[int]:
    """Fold numbers with both a train and a valid CSV in ``root`` (sorted); [] for layout (b)."""
    found: dict[int, set] = {}
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            m = _CSV.match(p.name)
            if m:
                found.setdefault(int(m.group(2)), set()).add(m.group(1))
    return sorted(k for k, s in found.items() if s == {"train", "valid"})


def _classification_dir(root: Path) -> Path:
    """The folder holding ``imgN/`` subfolders: ``root/Classification`` or ``root`` itself."""
    return root / "Classification" if (root / "Classification").is_dir() else root


def image_path(root, name: str) -> Path:
    """Where the image a CSV row names lives: beside the CSV, else in the download's layout."""
    root = Path(root)
    p = root / name
    if p.is_file():
        return p
    stem = Path(name).stem
    q = _classification_dir(root) / stem / name
    return q if q.is_file() else p


def _parse_label(text: str) -> int | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return int(v) if v in (0.0, 1.0) else None


def read_fold_csv(path, errors: list | None = None) -> tuple[list[Path], list[int]]:
    """(image paths, labels) of one fold CSV. Bad rows raise DataError naming file and line, or with
    ``errors`` (a list) are appended to it and skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: fold file missing")
    paths, labels = [], []
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = [s.strip() for s in line.split(",")]
        if len(parts) != 2 or not parts[0]:
            _fail(errors, f"{path}:{n}: expected 'imgN.bmp,label', got {line!r}")
            continue
        label = _parse_label(parts[1])
        if label is None:
            _fail(errors, f"{path}:{n}: malformed label {parts[1]!r} for {parts[0]} (expected 0 or 1)")
            continue
        img = image_path(path.parent, parts[0])
        if not img.is_file():
            _fail(errors, f"{path}:{n}: names {parts[0]}, which is missing (looked for {img})")
            continue
        paths.append(img)
        labels.append(label)
    return paths, labels


def read_detection(mat_path) -> np.ndarray:
    """(n, 2) float centres of the epithelial nuclei in a CRCHistoPhenotypes ``imgN_epithelial.mat``."""
    import scipy.io

    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise FileNotFoundError(
            f"{mat_path}: annotation file missing (every image needs its _epithelial.mat)"
        )
    try:
        mat = scipy.io.loadmat(mat_path)
    except Exception as e:  # scipy raises several types for truncated / non-MAT files
        raise DataError(f"{mat_path}: not a readable .mat file ({type(e).__name__}: {e})") from e
    if "detection" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{mat_path}: no 'detection' array (keys: {keys})")
    d = np.asarray(mat["detection"])
    if d.size == 0:
        return np.zeros((0, 2))
    if d.ndim != 2 or d.shape[1] != 2 or not np.issubdtype(d.dtype, np.number):
        raise DataError(
            f"{mat_path}: 'detection' should be an (n, 2) array of centres, got {d.shape} {d.dtype}"
        )
    return d.astype(np.float64)


def download_index(root, errors: list | None = None) -> tuple[list[Path], list[int]]:
    """(image paths, labels) of layout (b), ordered by image number; label = any epithelial nucleus."""
    cdir = _classification_dir(Path(root))
    dirs = sorted((p for p in cdir.iterdir() if p.is_dir() and _IMG.match(p.name)),
                  key=lambda p: int(_IMG.match(p.name).group(1))) if cdir.is_dir() else []  # fmt: skip
    if not dirs:
        raise FileNotFoundError(
            f"{root}: no colon-cancer data: neither labels_histo_{{train,valid}}_fold_K.csv files nor "
            "Classification/imgN/ folders"
        )
    paths, labels = [], []
    for d in dirs:
        img, mat = d / f"{d.name}.bmp", d / f"{d.name}_epithelial.mat"
        try:
            if not img.is_file():
                raise DataError(f"{img}: image file missing")
            n = read_detection(mat).shape[0]
        except (DataError, FileNotFoundError) as e:
            _fail(errors, str(e))
            continue
        paths.append(img)
        labels.append(int(n >= 1))
    return paths, labels


class ColonCancer(ImageFileDataset):
    """Fold ``fold`` of the colon-cancer set, ``split`` "train" or "valid" (see the module docstring).

    Items: (image (3, 500, 500) uint8 RGB, lowres (3, 50, 50) at ``scale``, label 0/1). ``folds`` and
    ``seed`` only matter for layout (b) without fold CSVs. ``layout`` says which was read ("csv" or
    "download"); ``n_folds`` how many folds there are."""

    def __init__(self, root, fold: int = 1, split: str = "train", *, folds: int = 10, seed: int = 0,
                 scale: float = 0.1, transform=None, cache: bool = True):  # fmt: skip
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: must be 'train' or 'valid'")
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: colon-cancer root folder does not exist")
        available = csv_folds(root)
        if available:
            if fold not in available:
                raise ValueError(f"fold {fold!r} does not exist in {root}: the fold CSVs there are folds "
                                 f"{available} (labels_histo_{{train,valid}}_fold_K.csv)")  # fmt: skip
            paths, labels = read_fold_csv(root / f"labels_histo_{split}_fold_{fold}.csv")
            self.layout, self.n_folds = "csv", len(available)
        else:
            if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
                raise ValueError(f"folds={folds!r}: need an int >= 2")
            if isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= folds:
                raise ValueError(f"fold {fold!r} does not exist: the stratified folds are 1..{folds}")
            all_paths, all_labels = download_index(root)
            tr, va = kfold_indices(len(all_paths), folds, fold - 1, seed=seed, labels=all_labels)
            idx = tr if split == "train" else va
            paths, labels = [all_paths[i] for i in idx], [all_labels[i] for i in idx]
            self.layout, self.n_folds = "download", folds
        if not paths:
            raise DataError(f"{root}: fold {fold} {split} split is empty")
        super().__init__(paths, labels, CLASSES, scale=scale, transform=transform, cache=cache, size=SIZE)
        self.root, self.fold, self.split = root, fold, split
        if self.layout == "download" and transform is None:
            # the per-epoch patch diagnosis (ObjectStats): only where the annotations exist and the
            # pixels are not moved (flips and rotations would move the objects away from their boxes)
            self.object_boxes = self._object_boxes
            self._boxes: dict[int, np.ndarray] = {}  # read once: the diagnosis asks every epoch

    def _object_boxes(self, i: int) -> np.ndarray:
        """(k, 4) int64 y0, x0, y1, x1 (half-open) boxes of OBJECT_BOX px around image i's annotated
        epithelial nuclei (the .mat beside the image holds their (x, y) centres)."""
        if i not in self._boxes:
            self._boxes[i] = self._read_boxes(i)
        return self._boxes[i]

    def _read_boxes(self, i: int) -> np.ndarray:
        p = Path(self.paths[i])
        c = read_detection(p.with_name(f"{p.stem}_epithelial.mat")).reshape(-1, 2)
        r = OBJECT_BOX // 2
        x, y = np.rint(c[:, 0]).astype(np.int64), np.rint(c[:, 1]).astype(np.int64)
        return np.stack([y - r, x - r, y + r + 1, x + r + 1], 1).reshape(-1, 4)


OBJECT_BOX = 13  # px: an epithelial nucleus of the stand-in is 9-13 px long


def fold_numbers(root, folds: int = 10) -> list[int]:
    """The folds a k-fold run over ``root`` visits: the CSV folds when present, else 1..folds."""
    return csv_folds(root) or list(range(1, folds + 1))
