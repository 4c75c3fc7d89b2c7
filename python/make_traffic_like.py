"""Write a generated Swedish-Traffic-Signs-like set (Set1/, Set2/, JPEGs, annotations.txt) that
TrafficSigns reads: road scenes with one small speed-limit sign (50/70/80) or none.

    python python/make_traffic_like.py --out data/traffic_like --n-train 200 --n-test 100
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zoomkern.data.traffic_like import make_traffic_like  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--empty-share", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    make_traffic_like(a.out, a.n_train, a.n_test, empty_share=a.empty_share, seed=a.seed)
    print(f"wrote {a.n_train} + {a.n_test} images to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
