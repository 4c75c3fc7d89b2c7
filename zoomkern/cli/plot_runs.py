"""Test accuracy per epoch of several training runs in one picture (their metrics.csv files).

    zoomkern plot-runs Zoom-In=runs/paper_zoomin/metrics.csv ATS=runs/paper_ats/metrics.csv \\
        --png docs/img/curves_paper.png --title "--preset paper, 2-core CPU"
"""

from __future__ import annotations

import os

from ._common import deprecated, parse_args, parser


def main(argv=None, prog=None) -> int:
    p = parser(prog, __doc__)
    p.add_argument("runs", nargs="+", metavar="LABEL=METRICS_CSV", help="one curve per run, labelled")
    p.add_argument("--png", required=True, metavar="FILE", help="the picture to write (.png)")
    deprecated(p, "--out", "--png")  # --out names a folder in every other command
    p.add_argument("--title", default="", help="the picture's title (default: none)")
    a = parse_args(p, argv)
    runs = {}
    for item in a.runs:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            p.error(f"{item!r}: expected LABEL=path/to/metrics.csv")
        if not os.path.isfile(path):
            p.error(f"{path}: no such file")
        runs[label] = path
    from ..training.plot import plot_curves

    print(plot_curves(runs, a.png, a.title))
    return 0
