"""Generate a data set in the layout its loader reads (``zoomkern train --dataset ... --root DIR``).

    zoomkern make-data megapixel-mnist --root data/mmnist --n-train 5000 --n-test 1000
    zoomkern make-data megapixel-mnist --root data/mmnist --add-scale 0.25    # only add a low view
    zoomkern make-data colon-like --root data/colon_like                       # 100 images, 10 fold CSVs
    zoomkern make-data colon-like --root data/colon_dl --layout download       # Classification/imgN/ + .mat
    zoomkern make-data traffic-like --root data/traffic_like --n-train 200 --n-test 100
    zoomkern make-data slides --root /work/data_slides --n 4                   # 100000 x 100000 BigTIFFs

Every generator is deterministic from ``--data-seed``. ``zoomkern make-data KIND --help`` lists its flags.
"""

from __future__ import annotations

import argparse
import os
import time

from ._common import Formatter, deprecated, parser


def _common(p: argparse.ArgumentParser, root_help: str) -> None:
    p.add_argument("--root", required=True, metavar="DIR", help=root_help)
    deprecated(p, "--out", "--root")  # the folder `zoomkern train --root` then reads
    p.add_argument("--data-seed", type=int, default=0, help="the generator's seed")
    deprecated(p, "--seed", "--data-seed")  # train's --seed is the training seed
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _size(p: argparse.ArgumentParser, values) -> tuple[int, int]:
    if len(values) not in (1, 2):
        p.error(f"--size {' '.join(map(str, values))}: one number (square) or two (H W)")
    return values[0], values[-1]


def megapixel_mnist(a, p) -> None:
    from ..data import add_low_view, make_megapixel_mnist

    t0 = time.perf_counter()
    if a.add_scale is not None:
        splits = [
            os.path.join(a.root, s) for s in ("train", "test") if os.path.isdir(os.path.join(a.root, s))
        ]
        if not splits:
            raise SystemExit(f"--root {a.root}: no train/ or test/ split to add a low view to")
        for d in splits:
            print(f"wrote {add_low_view(d, a.add_scale, progress=a.progress)}")
        print(f"done in {time.perf_counter() - t0:.1f} s")
        return
    size = _size(p, a.size)
    root = make_megapixel_mnist(
        a.root, a.n_train, a.n_test, size=size, n_noise=a.n_noise, scale=a.scale, seed=a.data_seed,
        binary_digit=a.binary_digit, progress=a.progress, overwrite=a.overwrite,
    )  # fmt: skip
    dt, n = time.perf_counter() - t0, a.n_train + a.n_test
    print(f"wrote {n} images ({size[0]}x{size[1]}) to {root.resolve()} in {dt:.1f} s ({n / dt:.1f} images/s)")


def colon_like(a, p) -> None:
    from ..data.colon_like import make_colon_like

    root = make_colon_like(a.root, a.n, folds=a.folds, layout=a.layout, seed=a.data_seed, objects=a.objects,
                           progress=a.progress)  # fmt: skip
    print(f"wrote {a.n} images to {root} ({a.layout} layout)")


def traffic_like(a, p) -> None:
    from ..data.traffic_like import make_traffic_like

    make_traffic_like(a.root, a.n_train, a.n_test, empty_share=a.empty_share, seed=a.data_seed,
                      progress=a.progress)  # fmt: skip
    print(f"wrote {a.n_train} + {a.n_test} images to {a.root}")


def slides(a, p) -> None:
    from ..data.synthetic_slides import make_synthetic_slides

    t0 = time.perf_counter()
    kw = dict(seed=a.data_seed, compression=a.compression, quality=a.quality, progress=a.progress)
    for info in make_synthetic_slides(a.root, a.n, _size(p, a.size), **kw):
        what = "kept" if info.get("reused") else f"{info['tiles']} tiles"
        print(f"{info['path']}: label {info['label']}, {info['bytes'] / 2**20:.1f} MiB, {what}")
    labels = os.path.join(a.root, "labels.csv")
    print(f"{a.n} slides in {time.perf_counter() - t0:.0f} s; labels: {labels}")


KINDS = {
    "megapixel-mnist": "Megapixel MNIST (root/train, root/test): memmapped .npy files and a stored low view.",
    "colon-like": 'A colon-cancer-like set (tiny dark "epithelial" objects on positives) for ColonCancer.',
    "traffic-like": "A Swedish-Traffic-Signs-like set (Set1/, Set2/, JPEGs, annotations.txt): road scenes "
    "with one small speed-limit sign (50/70/80) or none.",
    "slides": "Synthetic whole-slide images: RGB pyramidal tiled BigTIFFs written tile by tile, plus "
    "labels.csv (slide,label). Odd slides (label 1) hold small dark-brown disks in the tissue; memory stays "
    "at a few tens of MB whatever the size.",
}


def _parsers(prog: str | None) -> argparse.ArgumentParser:
    top = parser(prog, __doc__)
    kinds = top.add_subparsers(dest="kind", required=True, metavar="KIND")

    def kind(name, fn):
        sp = kinds.add_parser(name, help=KINDS[name], description=KINDS[name], formatter_class=Formatter)
        sp.set_defaults(run=fn)
        return sp

    m = kind("megapixel-mnist", megapixel_mnist)
    _common(m, "data set folder; train/ and test/ are written inside")
    m.add_argument("--n-train", type=int, default=5000, help="training images")
    m.add_argument("--n-test", type=int, default=1000, help="test images")
    m.add_argument("--size", type=int, nargs="+", default=[1500, 1500], metavar="N",
                   help="canvas size: N (square) or H W")  # fmt: skip
    m.add_argument("--n-noise", type=int, default=50, help="noise stamps per image (0: a clean canvas)")
    deprecated(m, "--noise", "--n-noise")  # train's name for it
    m.add_argument("--scale", type=float, default=0.12, help="scale of the stored low-resolution view")
    m.add_argument(
        "--binary-digit", type=int, help="label = 1 iff this digit is present (default: 10 classes)"
    )
    m.add_argument("--overwrite", action="store_true", help="replace existing train/ and test/")
    m.add_argument("--add-scale", type=float, metavar="S",
                   help="only add a low view at scale S to an existing root (images kept)")  # fmt: skip

    c = kind("colon-like", colon_like)
    _common(c, "data set folder")
    c.add_argument("--n", type=int, default=100, help="images")
    c.add_argument("--folds", type=int, default=10, help="fold CSVs written (csv layout)")
    c.add_argument("--layout", choices=("csv", "download"), default="csv",
                   help="csv: fold CSVs; download: Classification/imgN/ + .mat, as downloaded")  # fmt: skip
    c.add_argument("--objects", choices=("clusters", "sparse"), default="clusters",
                   help="what positives hold: gland-like clusters of 10-20 dark objects (like the real set) "
                   "or 1-3 lone ones (a tiny-object task)")  # fmt: skip

    t = kind("traffic-like", traffic_like)
    _common(t, "data set folder; Set1/ (training) and Set2/ (test) are written inside")
    t.add_argument("--n-train", type=int, default=200, help="training images (Set1)")
    t.add_argument("--n-test", type=int, default=100, help="test images (Set2)")
    t.add_argument("--empty-share", type=float, default=0.25, help="share of images without a sign")

    s = kind("slides", slides)
    _common(s, "folder for slide_000.tif ... and labels.csv")
    s.add_argument("--n", type=int, default=4, help="number of slides (labels alternate 0, 1, ...)")
    s.add_argument("--size", type=int, nargs="+", default=[100_000], metavar="N",
                   help="level-0 size: N (square) or H W")  # fmt: skip
    s.add_argument("--compression", choices=("jpeg", "deflate"), default="jpeg", help="tile compression")
    s.add_argument("--quality", type=int, default=85, help="JPEG quality (1-100)")
    return top


def main(argv=None, prog=None) -> int:
    p = _parsers(prog)
    a = p.parse_args(argv)
    sub = p._subparsers._group_actions[0].choices[a.kind]
    if a.root is None:  # required, but --out (deprecated) may have given it: see _common.deprecated
        sub.error("the following arguments are required: --root")
    a.run(a, sub)
    return 0
