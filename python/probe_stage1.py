"""``python python/probe_stage1.py ARGS`` is ``zoomkern probe-stage1 ARGS`` (zoomkern/cli/probe_stage1.py).

Kept so that the documented commands still work."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zoomkern.cli import probe_stage1 as _cli  # noqa: E402
from zoomkern.cli.probe_stage1 import recall_at, tile_labels  # noqa: E402,F401


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    return _cli.main(args, prog="zoomkern probe-stage1")


if __name__ == "__main__":
    sys.exit(main())
