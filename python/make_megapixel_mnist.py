"""Generate a Megapixel MNIST dataset directory (root/train, root/test) as memmapped .npy files.

Example: python python/make_megapixel_mnist.py --out data/mmnist --n-train 5000 --n-test 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

from zoomkern.data import add_low_view, make_megapixel_mnist  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="dataset root; train/ and test/ are written inside")
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--size", type=int, nargs=2, default=(1500, 1500), metavar=("H", "W"))
    ap.add_argument("--noise", type=int, default=50, help="noise stamps per image (0 for a clean canvas)")
    ap.add_argument("--scale", type=float, default=0.12, help="scale of the stored low-resolution view")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--binary-digit", type=int, default=None, help="label = 1 iff this digit is present")
    ap.add_argument("--overwrite", action="store_true", help="replace existing train/ and test/")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--add-scale", type=float, metavar="S", help="only add a low view at scale S (images kept)"
    )
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if a.add_scale is not None:
        splits = [os.path.join(a.out, s) for s in ("train", "test") if os.path.isdir(os.path.join(a.out, s))]
        if not splits:
            raise SystemExit(f"--out {a.out}: no train/ or test/ split to add a low view to")
        for d in splits:
            print(f"wrote {add_low_view(d, a.add_scale, progress=not a.no_progress)}")
        print(f"done in {time.perf_counter() - t0:.1f} s")
        return
    root = make_megapixel_mnist(
        a.out, a.n_train, a.n_test, size=tuple(a.size), n_noise=a.noise, scale=a.scale, seed=a.seed,
        binary_digit=a.binary_digit, progress=not a.no_progress, overwrite=a.overwrite,
    )  # fmt: skip
    dt = time.perf_counter() - t0
    n = a.n_train + a.n_test
    size = f"{a.size[0]}x{a.size[1]}"
    print(f"wrote {n} images ({size}) to {root.resolve()} in {dt:.1f} s ({n / dt:.1f} images/s)")


if __name__ == "__main__":
    main()
