"""What was built (zoomkern._C, its CUDA kernels, the CPU SIMD build) and which backend runs each op here.

zoomkern info            # the same as python -m zoomkern.info
"""

from __future__ import annotations

from ._common import parser


def main(argv=None, prog=None) -> int:
    parser(prog, __doc__).parse_args(argv)
    from .. import info

    try:
        info.main()
    except BrokenPipeError:  # `zoomkern info | head` is fine
        pass
    return 0
