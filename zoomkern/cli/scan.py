"""Check a data set on disk and report every bad file at once (the loaders stop at the first).

    zoomkern scan --dataset colon --root DIR
    zoomkern scan --dataset traffic_signs --root DIR

Prints one line per problem (file, line where there is one, what is wrong) and exits 1 if there was any.
Every image is decoded in full: a truncated file is found here, not hours into training.
"""

from __future__ import annotations

import sys

from ._common import parser


def main(argv=None, prog=None) -> int:
    from ..data.scan import SCANS

    p = parser(prog, __doc__)
    p.add_argument("--dataset", choices=sorted(SCANS), required=True, help="which layout to check")
    p.add_argument("--root", required=True, metavar="DIR", help="the data set's folder")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    a = p.parse_args(argv)
    problems, good = SCANS[a.dataset](a.root, progress=a.progress)
    for msg in problems:
        print(msg)
    if problems:
        print(f"{len(problems)} problem(s) in {a.root}; {good} images read fine", file=sys.stderr)
        return 1
    print(f"{a.root}: {good} images, no problems")
    return 0
