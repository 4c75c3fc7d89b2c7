"""``python python/predict.py ARGS`` is ``zoomkern predict ARGS`` (zoomkern/cli/predict.py).

Kept so that the documented commands still work."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zoomkern.cli import predict as _cli  # noqa: E402


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    return _cli.main(args, prog="zoomkern predict")


if __name__ == "__main__":
    sys.exit(main())
