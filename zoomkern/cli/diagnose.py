"""Where does a trained Megapixel MNIST model lose the digits? Stage I, the patches, or the classifier.

    zoomkern diagnose --checkpoint runs/paper_zoomin/checkpoint.pt
    zoomkern diagnose --checkpoint runs/paper_zoomin/checkpoint.pt --n-tiles-eval 16 36 --n-sub-eval 3

Evaluates the checkpoint on its test set once per evaluation setting (tiles x sub-cells for Zoom-In;
``--n-patches-eval`` for ATS) and prints a Markdown table: accuracy, the share of digits inside a drawn tile
(stage I) and touched by a patch, the share of images with k = 0..3 target digits touched, and the
accuracy given k. Settings other than the trained ones show what more evaluation patches would buy.
"""

from __future__ import annotations

import time

from ._common import deprecated, parser


def _pct(v) -> str:
    return "-" if v != v else f"{100 * v:.1f}"


def main(argv=None, prog=None) -> int:
    p = parser(prog, __doc__)
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="RUN/checkpoint.pt of zoomkern train")
    p.add_argument("--n-tiles-eval", type=int, nargs="+", help="Zoom-In: tiles evaluated (default: trained)")
    p.add_argument("--n-sub-eval", type=int, nargs="+", help="Zoom-In: sub-cells per tile (default: trained)")
    p.add_argument("--n-patches-eval", type=int, nargs="+", metavar="N",
                   help="ATS: patches evaluated (default: trained)")  # fmt: skip
    deprecated(p, "--n-patches", "--n-patches-eval")  # train's --n-patches is the training count
    p.add_argument("--limit", type=int, help="only the first N test images (default: all)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    a = p.parse_args(argv)

    import itertools

    import torch

    from zoomkern.training.data import loader
    from zoomkern.training.diagnosis import DigitRecall
    from zoomkern.training.predict import load_model
    from zoomkern.training.registry import build

    if a.threads:
        torch.set_num_threads(a.threads)
    model, cfg = load_model(a.checkpoint)
    if cfg.dataset != "megapixel_mnist":
        raise SystemExit(f"{a.checkpoint}: trained on {cfg.dataset!r}; this diagnosis needs Megapixel MNIST")
    cfg.epochs = 1  # only the test set is used; no curriculum sets are opened
    test = build(cfg).test
    zoomin = hasattr(model, "n_tiles_eval")
    if zoomin:
        settings = list(
            itertools.product(a.n_tiles_eval or [model.n_tiles_eval], a.n_sub_eval or [model.n_sub_eval])
        )
    else:
        settings = [(k, None) for k in (a.n_patches_eval or [model.n_patches_eval])]
    tile = getattr(model, "tile_size", None)
    n_test = len(test) if a.limit is None else min(a.limit, len(test))
    print(f"{a.checkpoint}: {cfg.model}, {n_test} test images")
    print("| setting | patches | acc % | digits in a drawn tile % | digits touched % | "
          "images with 0/1/2/3 target digits touched % | acc given 0/1/2/3 % | s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for first, second in settings:
        if zoomin:
            model.n_tiles_eval, model.n_sub_eval = first, second
            label, n_patch = f"{first} tiles x {second} sub-cells", first * second
        else:
            model.n_patches_eval = first
            label, n_patch = f"{first} cells", first
        torch.manual_seed(cfg.seed)  # sampled evaluation (no --eval-topk) repeats
        stats, seen, t0 = DigitRecall(test, model.patch_size, tile), 0, time.perf_counter()
        with torch.no_grad():
            for batch in loader(test, cfg, False, 0, torch.device("cpu")):
                image, low, y = batch[:3]
                out = model(image, low)
                idx = range(seen, seen + y.shape[0])
                stats.update(out, idx, (out["logits"].argmax(1) == y).numpy())
                seen += y.shape[0]
                if a.limit is not None and seen >= a.limit:
                    break
        r = stats.result()
        hist = "/".join(_pct(v) for v in r["target_hits"])
        given = "/".join(_pct(v) for v in r["acc_given_hits"])
        rates = " | ".join(_pct(r[k]) for k in ("acc", "digit_in_tile", "digit_hit"))
        secs = time.perf_counter() - t0
        print(f"| {label} | {n_patch} | {rates} | {hist} | {given} | {secs:.0f} |", flush=True)
    return 0
