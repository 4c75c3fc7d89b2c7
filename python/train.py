"""The reference training script: Zoom-In (or a baseline) on Megapixel MNIST or a registered data set.

    python python/train.py --preset demo                     # small canvas, ~10 min on 2 CPU cores
    python python/train.py --preset paper --model ats        # 1500x1500, 5000/1000 images, 10 patches
    python python/train.py --preset demo --resume            # continue from runs/demo/checkpoint.pt
    torchrun --nproc-per-node 2 python/train.py --preset demo # data parallel (gloo on CPU, nccl on CUDA)
    python python/train.py --dataset colon --root DIR --folds 10   # 10-fold CV, writes <out>/folds.csv
    python python/train.py --dataset traffic_signs --root DIR      # Swedish traffic signs (Set1/, Set2/)

Every TrainConfig field is a flag (``--n-tiles 8``, ``--no-prior``); a preset sets defaults, flags win.
Writes ``<out>/metrics.csv``, ``<out>/checkpoint.pt``, ``<out>/attention.png`` and prints a summary line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _tune_cpu_allocator() -> None:
    """Keep freed training buffers mapped instead of returning them to the kernel after every step.

    Each step allocates and frees tile views, patches and activations of many MB; with glibc's defaults
    they are mmap'ed and unmapped every time and the page faults took 40% of the CPU time (traffic
    signs). Transparent huge pages for torch's CPU allocator plus no mmap/trim below 1 GiB: 129 -> 47
    ms/image there, 33.5 -> 21.5 ms/image at --preset paper (README). It must run before torch
    allocates (THP_MEM_ALLOC_ENABLE is read once). ZOOMKERN_DEFAULT_MALLOC=1 keeps the defaults.
    """
    if os.environ.get("ZOOMKERN_DEFAULT_MALLOC") == "1" or not sys.platform.startswith("linux"):
        return
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # not glibc (musl): the defaults stay
        pass


_tune_cpu_allocator()

from zoomkern.training import PRESETS, TrainConfig, summary_line, train  # noqa: E402
from zoomkern.training.kfold import kfold_line, run_kfold  # noqa: E402
from zoomkern.training.registry import DATASETS  # noqa: E402


def _flag_type(tp):
    """('tuple', element type) or ('scalar', type) for a field annotation, Optional unwrapped."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is tuple:
        return "tuple", typing.get_args(tp)[0]
    return "scalar", tp


def parse(argv=None) -> TrainConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named configuration; other flags override it")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        tp = hints[f.name]
        if tp is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
            continue
        kind, elem = _flag_type(tp)
        if f.name == "dataset":
            p.add_argument(flag, dest=f.name, choices=sorted(DATASETS), default=None)
        elif kind == "tuple":
            p.add_argument(flag, dest=f.name, type=elem, nargs="+", default=None, metavar="N")
        else:
            p.add_argument(flag, dest=f.name, type=elem, default=None)
    a = p.parse_args(argv)
    # --dataset colon alone takes the colon preset (the data set's own recipe); --preset wins.
    preset = a.preset or (a.dataset if a.dataset in PRESETS else None)
    values = dict(PRESETS[preset]) if preset else {}
    values.update({k: v for k, v in vars(a).items() if v is not None and k != "preset"})
    for k in ("size", "sub_grid"):
        if k in values and values[k] is not None and len(values[k]) == 1:
            values[k] = (values[k][0], values[k][0])
    return TrainConfig(**values)


def main(argv=None) -> int:
    cfg = parse(argv)
    if cfg.folds >= 2:
        print(kfold_line(run_kfold(cfg)), flush=True)
        return 0
    s = train(cfg)
    if s["rank"] == 0:  # under torchrun, one summary
        print(summary_line(s), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
