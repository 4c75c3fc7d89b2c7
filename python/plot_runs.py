"""Test accuracy per epoch of several training runs in one picture (their metrics.csv files).

    python python/plot_runs.py Zoom-In=runs/paper_zoomin/metrics.csv ATS=runs/paper_ats/metrics.csv \\
        --out docs/curves_paper.png --title "--preset paper, 2-core CPU"
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="LABEL=METRICS_CSV")
    p.add_argument("--out", required=True, help="the picture to write (.png)")
    p.add_argument("--title", default="")
    a = p.parse_args(argv)
    runs = {}
    for item in a.runs:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            p.error(f"{item!r}: expected LABEL=path/to/metrics.csv")
        if not os.path.isfile(path):
            p.error(f"{path}: no such file")
        runs[label] = path
    from zoomkern.training.plot import plot_curves

    print(plot_curves(runs, a.out, a.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
