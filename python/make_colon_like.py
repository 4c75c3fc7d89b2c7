"""Write a generated colon-cancer-like set (tiny dark "epithelial" objects on positives) in the layout
ColonCancer reads.

    python python/make_colon_like.py --out data/colon_like                     # 100 images, 10 fold CSVs
    python python/make_colon_like.py --out data/colon_dl --layout download     # Classification/imgN/ + .mat
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zoomkern.data.colon_like import make_colon_like  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--layout", choices=("csv", "download"), default="csv")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    root = make_colon_like(a.out, a.n, folds=a.folds, layout=a.layout, seed=a.seed)
    print(f"wrote {a.n} images to {root} ({a.layout} layout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
