"""``python python/train.py ARGS`` is ``zoomkern train ARGS`` (zoomkern/cli/train.py), kept so that the
documented commands (and ``torchrun python/train.py``) still work."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
if __name__ == "__main__":
    # zoomkern's import then sees `zoomkern train` and tunes the allocator before torch loads (_alloc.py).
    sys.argv[:1] = ["zoomkern", "train"]

from zoomkern.cli.train import main, parse  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main(sys.argv[2:], prog="zoomkern train"))
