"""Write synthetic whole-slide images: RGB pyramidal tiled BigTIFFs, tile by tile, plus ``labels.csv``.

    python python/make_synthetic_slide.py --out /work/data_slides --n 4              # 100000 x 100000
    python python/make_synthetic_slide.py --out /tmp/slides --n 6 --size 3000 --compression deflate

Tissue-like texture on a white background; odd-numbered slides (label 1) also hold a few clusters of
small dark-brown disks inside the tissue. Deterministic from ``--seed``. Memory stays at a few tens of MB
whatever the size (no level is ever held in memory). The CSV has a header ``slide,label``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zoomkern.data.synthetic_slides import make_synthetic_slides  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for slide_000.tif ... and labels.csv")
    p.add_argument("--n", type=int, default=4, help="number of slides (labels alternate 0, 1, ...)")
    p.add_argument("--size", type=int, nargs="+", default=[100_000], metavar="N",
                   help="level-0 size: N (square) or H W")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compression", choices=("jpeg", "deflate"), default="jpeg")
    p.add_argument("--quality", type=int, default=85, help="JPEG quality (1-100)")
    a = p.parse_args(argv)
    if len(a.size) not in (1, 2):
        p.error("--size takes one or two numbers")
    size = (a.size[0], a.size[-1])
    t0 = time.perf_counter()
    for info in make_synthetic_slides(
        a.out, a.n, size, seed=a.seed, compression=a.compression, quality=a.quality
    ):
        what = "kept" if info.get("reused") else f"{info['tiles']} tiles"
        print(f"{info['path']}: label {info['label']}, {info['bytes'] / 2**20:.1f} MiB, {what}")
    print(f"{a.n} slides in {time.perf_counter() - t0:.0f} s; labels: {os.path.join(a.out, 'labels.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
