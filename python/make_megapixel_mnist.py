"""``python python/make_megapixel_mnist.py ARGS`` is ``zoomkern make-data megapixel-mnist ARGS``.

Kept (zoomkern/cli/make_data.py is the code) so that the documented commands still work."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zoomkern.cli import make_data as _cli  # noqa: E402


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    return _cli.main(["megapixel-mnist", *args], prog="zoomkern make-data")


if __name__ == "__main__":
    sys.exit(main())
