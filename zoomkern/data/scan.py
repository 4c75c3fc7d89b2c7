"""Check a data set on disk and report every bad file at once (the loaders stop at the first).

    zoomkern scan --dataset colon --root DIR          # also: python -m zoomkern.data.scan ...
    zoomkern scan --dataset traffic_signs --root DIR

Prints one line per problem (file, line where there is one, what is wrong) and exits 1 if there was any.
Every image is decoded in full: a truncated file is found here, not hours into training.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._image import DataError, read_rgb


def _check_images(paths, size, problems: list[str], progress: bool) -> int:
    from tqdm.auto import tqdm

    n = 0
    for p in tqdm(sorted(set(map(str, paths))), desc="decoding", unit="img", disable=not progress):
        try:
            a = read_rgb(p)
        except (DataError, FileNotFoundError) as e:
            problems.append(str(e))
            continue
        if size is not None and tuple(a.shape[1:]) != tuple(size):
            problems.append(f"{p}: image is {a.shape[1]}x{a.shape[2]}, expected {size[0]}x{size[1]}")
            continue
        n += 1
    return n


def scan_colon(root, progress: bool = False) -> tuple[list[str], int]:
    """(problems, good images) of a colon-cancer root in either layout."""
    from . import colon

    root, problems, paths = Path(root), [], []
    if not root.is_dir():
        return [f"{root}: colon-cancer root folder does not exist"], 0
    csvs = sorted(p for p in root.iterdir() if colon._CSV.match(p.name))
    if csvs:
        by_fold: dict[int, dict[str, set]] = {}
        for f in csvs:
            split, k = colon._CSV.match(f.name).groups()
            ps, _ = colon.read_fold_csv(f, problems)
            paths += ps
            by_fold.setdefault(int(k), {})[split] = set(map(str, ps))
        for k, d in sorted(by_fold.items()):
            for split in colon.SPLITS:
                if split not in d:
                    problems.append(f"{root / f'labels_histo_{split}_fold_{k}.csv'}: missing (fold {k} has "
                                    f"only its {'/'.join(d)} file)")  # fmt: skip
            both = d.get("train", set()) & d.get("valid", set())
            if both:
                problems.append(f"{root}: fold {k} has {len(both)} images in both train and valid, e.g. "
                                f"{sorted(both)[0]}")  # fmt: skip
    else:
        try:
            paths, _ = colon.download_index(root, problems)
        except FileNotFoundError as e:
            return [str(e)], 0
    return problems, _check_images(paths, colon.SIZE, problems, progress)


def scan_traffic_signs(root, progress: bool = False) -> tuple[list[str], int]:
    from . import traffic_signs as ts

    problems, good = [], 0
    for split in ts.SETS:
        try:
            paths, _, _, _ = ts.read_split(root, split, problems)
        except FileNotFoundError as e:
            problems.append(str(e))
            continue
        good += _check_images(paths, ts.SIZE, problems, progress)
    return problems, good


SCANS = {"colon": scan_colon, "traffic_signs": scan_traffic_signs}


def main(argv=None) -> int:
    """``python -m zoomkern.data.scan`` (as documented before ``zoomkern scan``, which it runs)."""
    from ..cli.scan import main as scan

    return scan(argv, prog="zoomkern scan")


if __name__ == "__main__":
    sys.exit(main())
