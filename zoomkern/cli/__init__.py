"""The ``zoomkern`` console command: one entry point, one subcommand per task.

``zoomkern CMD ...`` and ``python -m zoomkern CMD ...`` are the same program (zoomkern/__main__.py calls
this ``main``). Each command lives in its own module here and is imported only when it runs, so that
``zoomkern --help`` stays instant and ``zoomkern train`` can tune the allocator before torch loads
(zoomkern/_alloc.py).
"""

from __future__ import annotations

import difflib
import importlib
import sys

# name -> (module in zoomkern.cli, one line for `zoomkern --help`), in the order the help lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train Zoom-In (or a baseline) on a data set; --config FILE.yaml, --preset NAME"),
    "predict": ("predict", "class probabilities (and attention pictures) of new images from a checkpoint"),
    "make-data": ("make_data", "generate a data set: megapixel-mnist, colon-like, traffic-like, slides"),
    "scan": ("scan", "check a data set on disk and report every bad file at once"),
    "info": ("info", "what was built and which backend runs each op on this machine"),
    "diagnose": ("diagnose", "where a Megapixel MNIST model loses the digits: stage I, patches, classifier"),
    "probe-stage1": ("probe_stage1", "can stage I tell a digit from noise at a scale? a supervised probe"),
    "plot-runs": ("plot_runs", "test accuracy per epoch of several runs in one picture"),
}


def usage() -> str:
    from .._version import __version__

    width = max(map(len, COMMANDS))
    lines = [f"usage: zoomkern [-h] [--version] COMMAND ...   (zoomkern {__version__})", "",
             "Zoom-In networks for very large images with tiny objects.", "", "commands:"]  # fmt: skip
    lines += [f"  {name:{width}s}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "`zoomkern COMMAND --help` lists a command's flags; `python -m zoomkern ...` is the same."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from .._version import __version__

        print(f"zoomkern {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        choices = ", ".join(COMMANDS)
        print(f"zoomkern: unknown command {name!r}{hint} (choose from {choices})", file=sys.stderr)
        return 2
    module = importlib.import_module(f".{COMMANDS[name][0]}", __name__)
    return module.main(argv[1:], prog=f"zoomkern {name}")
