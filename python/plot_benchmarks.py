"""Plot the scaling benchmark from pytest-benchmark's saved results: memory and time against image side.

    pytest benchmarks/test_bench_scaling.py --scaling-sides all --benchmark-autosave
    python python/plot_benchmarks.py [RESULTS.json] [--out docs/img/scaling.png] [--table]

RESULTS.json is a file pytest-benchmark saved (``--benchmark-autosave`` or ``--benchmark-save``); by
default the newest one under ``.benchmarks/`` that holds scaling rows. Log-log, one line per model,
batch 1 solid and batch 8 dashed, training and inference steps; a point that ran out of memory is an
x at the cap. ``--table`` also prints the markdown table of docs/experiments/gigapixel.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

MODELS = ("zoomin", "ats", "cnn_lowres", "cnn_full")
LABEL = {"zoomin": "Zoom-In", "ats": "ATS", "cnn_lowres": "CNN, low view", "cnn_full": "CNN, full image"}
COLOR = {"zoomin": "tab:red", "ats": "tab:blue", "cnn_lowres": "tab:green", "cnn_full": "tab:gray"}


def find_results(root: str = ".benchmarks") -> str:
    files = sorted(glob.glob(os.path.join(root, "**", "*.json"), recursive=True), key=os.path.getmtime)
    for path in reversed(files):
        with open(path) as f:
            if any(b.get("extra_info", {}).get("side") for b in json.load(f).get("benchmarks", [])):
                return path
    raise SystemExit(
        f"no saved pytest-benchmark results with scaling rows under {root}/ (run with --benchmark-autosave)"
    )


def load(path: str):
    """(rows, machine line): one row per measured point, from the rows' extra_info."""
    with open(path) as f:
        data = json.load(f)
    rows = []
    for b in data["benchmarks"]:
        i = b.get("extra_info", {})
        if "side" not in i or "model" not in i:
            continue
        rows.append(i)
    if not rows:
        raise SystemExit(f"{path}: no scaling rows (benchmarks/test_bench_scaling.py)")
    return rows, machine(data, rows)


def machine(data: dict, rows: list[dict]) -> str:
    m, c = data.get("machine_info", {}), data.get("commit_info", {})
    cpu = m.get("cpu", {}).get("brand_raw") or m.get("processor") or m.get("machine", "?")
    cores = m.get("cpu", {}).get("count")
    threads = rows[0].get("threads")
    load = max(r.get("load_avg", 0) for r in rows)
    return (
        f"{cores}-core {cpu}, {threads} torch thread(s) per point, load avg up to {load:.0f}; "
        f"commit {c.get('id', '?')[:7]}{' (dirty)' if c.get('dirty') else ''}, "
        f"{data.get('datetime', '')[:16]}"
    )


def plot(rows, title: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9), sharex=True)
    for r, mode in enumerate(("train", "infer")):
        for c, key in enumerate(("peak_mib_per_image", "sec_per_image")):
            ax = axes[r, c]
            for model in MODELS:
                for batch, style in ((1, "-"), (8, "--")):
                    pts = sorted(
                        (
                            x
                            for x in rows
                            if x["model"] == model and x["mode"] == mode and x["batch"] == batch
                        ),
                        key=lambda x: x["side"],
                    )
                    ok = [(x["side"], x[key]) for x in pts if x.get("status") == "ok"]
                    if ok:
                        ax.plot(*zip(*ok, strict=True), style, marker="o", ms=4, color=COLOR[model],
                                label=f"{LABEL[model]}, batch {batch}")  # fmt: skip
                    oom = [x for x in pts if x.get("status") == "oom"]
                    if oom and key == "peak_mib_per_image":  # the cap per image: a lower bound it crossed
                        ys = [x["cap_gib_above_idle"] * 1024 / batch for x in oom]
                        ax.plot([x["side"] for x in oom], ys, "x", ms=10, mew=2, color=COLOR[model])
                    elif oom:
                        top = max(
                            (x[key] for x in rows if x.get("status") == "ok" and x["mode"] == mode), default=1
                        )
                        ax.plot(
                            [x["side"] for x in oom],
                            [top * 2] * len(oom),
                            "x",
                            ms=10,
                            mew=2,
                            color=COLOR[model],
                        )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            what = "peak memory per image (MiB)" if c == 0 else "seconds per image"
            ax.set_title(f"{'training' if mode == 'train' else 'inference'} step: {what}", fontsize=10)
            if r == 1:
                ax.set_xlabel("image side (pixels)")
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"zoomkern scaling benchmark (x: out of memory at the cap)\n{title}", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def table(rows) -> str:
    """Markdown: one row per (mode, batch, side), seconds and MiB per image for each model."""
    head = "| step | batch | side | " + " | ".join(f"{LABEL[m]} s / MiB" for m in MODELS) + " |"
    lines = [head, "|" + "---|" * (3 + len(MODELS))]
    keys = sorted(
        {(x["mode"], x["batch"], x["side"]) for x in rows}, key=lambda k: (k[0] != "train", k[1], k[2])
    )
    for mode, batch, side in keys:
        cells = []
        for m in MODELS:
            x = next(
                (x for x in rows if (x["mode"], x["batch"], x["side"], x["model"]) == (mode, batch, side, m)),
                None,
            )
            if x is None:
                cells.append("not run")
            elif x.get("status") == "oom":
                cells.append(f"OOM (cap {x['cap_gib_above_idle']:g} GiB / batch)")
            elif x.get("status") != "ok":
                cells.append("failed")
            else:
                cells.append(f"{x['sec_per_image']:.3g} / {x['peak_mib_per_image']:.0f}")
        lines.append(f"| {mode} | {batch} | {side} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(rows) -> str:
    """The issue's targets, per step and batch, from the same rows (Zoom-In against itself and others)."""

    def get(model, mode, batch, side):
        x = next(
            (x for x in rows if (x["model"], x["mode"], x["batch"], x["side"]) == (model, mode, batch, side)),
            None,
        )
        return x if x is not None and x.get("status") == "ok" else x

    out = []
    sides = sorted({x["side"] for x in rows})
    lo, hi = sides[0], sides[-1]
    for mode in ("train", "infer"):
        for batch in sorted({x["batch"] for x in rows}):
            z0, z1, z4 = (get("zoomin", mode, batch, s) for s in (lo, hi, 4000))
            line = [f"{mode} batch {batch}:"]
            if z0 and z1 and z0.get("status") == z1.get("status") == "ok":
                m0, m1 = z0["peak_mib_per_image"], z1["peak_mib_per_image"]
                t0, t1 = z0["sec_per_image"], z1["sec_per_image"]
                line.append(
                    f"Zoom-In memory {hi} vs {lo}: {m1:.0f} / {m0:.0f} MiB = {m1 / m0:.2f}x (target <= 1.5x, "
                    f"< 1024 MiB); time {t1:.3g} / {t0:.3g} s = {t1 / t0:.2f}x (target <= 2x)."
                )
            if z4 and z4.get("status") == "ok":
                for other, goal in (("cnn_full", ">= 20x"), ("ats", "> 1x")):
                    o = get(other, mode, batch, 4000)
                    if o is None:
                        continue
                    if o.get("status") == "oom":
                        cap = o["cap_gib_above_idle"] * 1024 / batch
                        line.append(
                            f"at 4000 {other} OOM: > {cap / z4['peak_mib_per_image']:.0f}x (target {goal})."
                        )
                    elif o.get("status") == "ok":
                        r = o["peak_mib_per_image"] / z4["peak_mib_per_image"]
                        line.append(f"at 4000 {other} / Zoom-In memory = {r:.2f}x (target {goal}).")
            out.append(" ".join(line))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", help="a pytest-benchmark JSON (default: newest under .benchmarks/)")
    ap.add_argument("--out", default="docs/img/scaling.png")
    ap.add_argument("--table", action="store_true", help="also print the markdown table")
    a = ap.parse_args(argv)
    path = a.results or find_results()
    rows, title = load(path)
    print(f"{path}: {len(rows)} points; {title}")
    plot(rows, title, a.out)
    if a.table:
        print(table(rows))
        print(targets(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
