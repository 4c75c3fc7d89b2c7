"""``python -m zoomkern CMD ...``: the same program as the ``zoomkern`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
