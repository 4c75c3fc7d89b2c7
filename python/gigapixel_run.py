"""The gigapixel end-to-end run, one command: synthetic slides -> Zoom-In training -> prediction -> figures.

    python python/gigapixel_run.py --root /work/data_slides/wsi100k --n 4 --size 100000 --epochs 4

Each step is its own process, measured from outside: wall time and peak resident memory (``ru_maxrss``
of that child alone, through ``os.wait4``). Slides already in ``--root`` with the same settings are kept,
so a rerun only trains and predicts. Writes ``<run>/gigapixel.json`` and prints a Markdown table; with
``--docs`` the attention picture of the first positive slide is copied to ``docs/img/attention_slide.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def run(cmd: list[str], log: str) -> dict:
    """Run ``cmd`` with stdout/stderr to ``log``; -> {seconds, peak_rss_mb, cmd}. Raises on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(log) as fh:
            tail = fh.read()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {code}; the end of {log}:\n{tail}")
    return dict(cmd=" ".join(cmd), seconds=secs, peak_rss_mb=usage.ru_maxrss / 1024)  # KiB on Linux


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder of the slides (outside git)")
    p.add_argument("--run", help="training output folder (default: <root>/run)")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--size", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--docs", action="store_true", help="copy the attention picture to docs/img/")
    a, extra = p.parse_known_args(argv)  # extra flags go to zoomkern train
    run_dir = a.run or os.path.join(a.root, "run")
    os.makedirs(run_dir, exist_ok=True)
    py = sys.executable
    steps = {}
    steps["slides"] = run(
        [py, "-m", "zoomkern", "make-data", "slides", "--root", a.root]
        + f"--n {a.n} --size {a.size}".split(),
        os.path.join(run_dir, "slides.log"),
    )
    labels = os.path.join(a.root, "labels.csv")
    # Low view 1/64 of level 0 (1563 px for 100000: read from the pyramid level of that size), a 49 x 49
    # grid of 2048-px tiles, tile views at 1/16 (128 px from the level of that downsample), 16 x 16
    # sub-cells of 128 px, 128-px patches from level 0: 8 tile draws x 2 sub-cells = 16 patches a slide.
    settings = (
        f"--dataset slides --epochs {a.epochs} --threads {a.threads} --batch-size 2 --scale {1 / 64} "
        f"--tile-size 2048 --s2 {1 / 16} --sub-grid 16 16 --patch-size 128 --n-tiles 8 --n-sub 2 "
        "--plot-images 0"
    )
    train_cmd = [py, "-m", "zoomkern", "train", "--root", a.root, "--labels", labels, "--out", run_dir]
    steps["train"] = run(train_cmd + settings.split() + extra, os.path.join(run_dir, "train.log"))
    ckpt = os.path.join(run_dir, "checkpoint.pt")
    preds = os.path.join(run_dir, "predictions.csv")
    plots = os.path.join(run_dir, "attention")
    steps["predict"] = run(
        [py, "-m", "zoomkern", "predict", "--checkpoint", ckpt, a.root, "--csv", preds, "--plot", plots]
        + ["--threads", str(a.threads)],
        os.path.join(run_dir, "predict.log"),
    )
    slides = sorted(f for f in os.listdir(a.root) if f.endswith(".tif"))[: a.n]
    disk = [os.path.getsize(os.path.join(a.root, f)) for f in slides]
    with open(os.path.join(run_dir, "metrics.csv")) as fh:
        last = fh.read().strip().splitlines()[-1]
    summary = dict(
        slides=len(slides),
        size=a.size,
        disk_mb_per_slide=sum(disk) / len(disk) / 2**20,
        epochs=a.epochs,
        train_seconds_per_slide_epoch=steps["train"]["seconds"] / (a.epochs * len(slides)),
        predict_seconds_per_slide=steps["predict"]["seconds"] / len(slides),
        last_metrics_row=last,
        steps=steps,
    )
    with open(os.path.join(run_dir, "gigapixel.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    print("| step | wall time | peak RSS |\n|---|---|---|")
    for k, v in steps.items():
        print(f"| {k} | {v['seconds']:.0f} s | {v['peak_rss_mb']:.0f} MiB |")
    print(
        f"disk: {summary['disk_mb_per_slide']:.0f} MiB per slide; train "
        f"{summary['train_seconds_per_slide_epoch']:.1f} s per slide-epoch (process start and test "
        f"pass included); predict {summary['predict_seconds_per_slide']:.1f} s per slide"
    )
    if a.docs:
        pos = [f for f in sorted(os.listdir(plots)) if f.startswith("slide_001")]
        if pos:
            os.makedirs(os.path.join(REPO, "docs", "img"), exist_ok=True)
            from PIL import Image  # a palette PNG: a third of the bytes, same picture to the eye

            img = Image.open(os.path.join(plots, pos[0])).convert("RGB").quantize(colors=128)
            img.save(os.path.join(REPO, "docs", "img", "attention_slide.png"), optimize=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
