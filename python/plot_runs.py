"""``python python/plot_runs.py ARGS`` is ``zoomkern plot-runs ARGS`` (zoomkern/cli/plot_runs.py).

Kept so that the documented commands still work."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zoomkern.cli import plot_runs as _cli  # noqa: E402


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    return _cli.main(args, prog="zoomkern plot-runs")


if __name__ == "__main__":
    sys.exit(main())
