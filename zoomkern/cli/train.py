"""Train Zoom-In (or a baseline) on Megapixel MNIST or a registered data set.

    zoomkern train --preset demo                        # small canvas, ~10 min on 2 CPU cores
    zoomkern train --preset paper --model ats           # 1500x1500, 5000/1000 images, 10 patches
    zoomkern train --config my.yaml --epochs 5          # a YAML file of fields (may name a preset:)
    zoomkern train --preset demo --print-config         # the resolved configuration, as YAML
    zoomkern train --preset demo --resume               # continue from runs/demo/checkpoint.pt
    torchrun --nproc-per-node 2 -m zoomkern train --preset demo   # data parallel (gloo CPU, nccl CUDA)
    zoomkern train --dataset colon --root DIR --folds 10          # 10-fold CV, writes <out>/folds.csv
    zoomkern train --dataset traffic_signs --root DIR             # Swedish traffic signs (Set1/, Set2/)

Every TrainConfig field is a flag (--n-tiles 8, --no-prior). Precedence: flags > --config file > preset
> defaults; the presets are commented YAML files in zoomkern/configs/. Writes <out>/config.yaml (the
resolved configuration: `--config` of it starts the same run), metrics.csv, checkpoint.pt, attention.png.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from .. import _alloc
from ._common import Formatter, show

if TYPE_CHECKING:
    from ..training import TrainConfig


def _metavar(name: str, tp) -> str:
    special = {"root": "DIR", "out": "DIR", "labels": "CSV", "test_labels": "CSV"}
    return special.get(name) or {int: "N", float: "X"}.get(tp) or name.split("_")[-1].upper()


def flag_help(name: str, sentence: str, default, presets: dict[str, dict]) -> str:
    """The field's sentence, its default, and the value each preset that sets it gives it."""
    set_by = ", ".join(f"{p}: {show(v[name])}" for p, v in presets.items() if name in v)
    return f"{sentence} (default: {show(default)}" + (f"; {set_by})" if set_by else ")")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    import typing

    from ..training import PRESETS, TrainConfig
    from ..training.config import HELP
    from ..training.config_file import _unwrap
    from ..training.registry import DATASETS

    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=Formatter)
    c = p.add_argument_group("configuration")
    preset_help = "a named configuration (zoomkern/configs/NAME.yaml); --config and flags override it"
    c.add_argument("--preset", choices=sorted(PRESETS), help=preset_help + " (default: the file's preset:, "
                   "else the data set's own preset when it has one)")  # fmt: skip
    c.add_argument("--config", metavar="FILE.yaml", help="TrainConfig fields as YAML, may name a preset: "
                   "(default: none); flags override it")  # fmt: skip
    c.add_argument("--print-config", action="store_true", help="print the resolved configuration, exit")
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    # A field that HELP lacks still gets its flag (tests/test_cli.py fails until it has a sentence).
    documented = {n for sentences in HELP.values() for n in sentences}
    todo = {n: "(no help text yet: add it to config.HELP)" for n in fields if n not in documented}
    for group, sentences in [*HELP.items(), ("other", todo)]:
        g = p.add_argument_group(group) if sentences else None
        for name, sentence in sentences.items():
            if name not in fields:  # a HELP entry left behind by a removed field (tests/test_cli.py)
                continue
            flag, f = "--" + name.replace("_", "-"), fields[name]
            kw = dict(dest=name, default=None, help=flag_help(name, sentence, f.default, PRESETS))
            tp, _ = _unwrap(hints[name])
            if tp is bool:
                g.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            elif typing.get_origin(tp) is tuple:
                g.add_argument(flag, type=typing.get_args(tp)[0], nargs="+", metavar="N", **kw)
            elif name == "dataset":
                g.add_argument(flag, choices=sorted(DATASETS), **kw)
            else:
                g.add_argument(flag, type=tp, metavar=_metavar(name, tp), **kw)
    return p


def _flags(a: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line."""
    from ..training.config_file import TUPLE_PAIRS

    skip = ("preset", "config", "print_config")
    values = {k: v for k, v in vars(a).items() if v is not None and k not in skip}
    for k in TUPLE_PAIRS:  # (H, W) fields: one number is a square, as in a config file
        if k in values:
            if len(values[k]) not in (1, 2):
                raise ValueError(f"--{k.replace('_', '-')}: one number (square) or two (H W)")
            values[k] = (values[k][0], values[k][-1])
    for k, v in values.items():
        if isinstance(v, list):
            values[k] = tuple(v)
    return values


def resolve(argv=None, prog=None):
    """(TrainConfig, parsed arguments, where the values came from) for a command line."""
    from ..training import PRESETS, TrainConfig
    from ..training.config_file import resolve as resolve_file

    a = build_parser(prog).parse_args(argv)
    cfg, where = resolve_file(TrainConfig, flags=_flags(a), config=a.config, preset=a.preset, presets=PRESETS)
    return cfg, a, where


def parse(argv=None) -> TrainConfig:
    """The TrainConfig of a command line (flags > --config file > preset > defaults)."""
    return resolve(argv)[0]


def main(argv=None, prog=None) -> int:
    _alloc.tune_cpu_allocator()  # already done when the process started as `zoomkern train` (_alloc)
    try:
        cfg, a, where = resolve(argv, prog)
    except ValueError as e:  # ConfigError (file, key) or a TrainConfig value: name it, no traceback
        build_parser(prog).error(str(e))
    from ..training import config_file, summary_line, train
    from ..training.kfold import kfold_line, run_kfold

    if a.print_config:
        print(config_file.dump(cfg, f"zoomkern train: resolved configuration ({where})"), end="")
        return 0
    if cfg.folds >= 2:
        print(kfold_line(run_kfold(cfg)), flush=True)
        return 0
    s = train(cfg)
    if s["rank"] == 0:  # under torchrun, one summary
        print(summary_line(s), flush=True)
    return 0
