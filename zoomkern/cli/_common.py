"""What every command shares: the help formatter, deprecated flag spellings, the device choice."""

from __future__ import annotations

import argparse
import warnings


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Docstrings as written (their examples keep their lines), "(default: X)" after every flag that does
    not already state it, and N / X as the metavar of integer / float values."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required or action.nargs == 0 or "default" in text or action.default is argparse.SUPPRESS:
            return text  # nargs 0: a switch, off unless given
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: {show(action.default)})"
        return text

    def _get_default_metavar_for_optional(self, action):
        return {int: "N", float: "X"}.get(action.type) or super()._get_default_metavar_for_optional(action)


def show(value) -> str:
    """A default as --help writes it: none, true/false, space-separated lists, '' for an empty string."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return " ".join(map(str, value))
    return repr(value) if value == "" else str(value)


def parser(prog: str | None, doc: str, **kw) -> argparse.ArgumentParser:
    """An ArgumentParser whose description is the command module's docstring."""
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=Formatter, **kw)


class _Deprecated(argparse.Action):
    """An old spelling of a flag: same destination, hidden from --help, warns when used."""

    def __init__(self, option_strings, dest, new: str = "", **kw):
        super().__init__(option_strings, dest, **kw)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(
            f"{parser.prog}: {option_string} is deprecated, use {self.new} (same meaning)",
            FutureWarning,
            stacklevel=2,
        )
        setattr(namespace, self.dest, values)


def deprecated(p: argparse.ArgumentParser, old: str, new: str, **kw) -> None:
    """Accept ``old`` as a hidden alias of the already-added flag ``new`` (same type and nargs)."""
    target = next(a for a in p._actions if new in a.option_strings)
    if target.required:  # either spelling satisfies it: checked by parse_args below
        target.required, target.zk_required = False, True
    p.add_argument(old, dest=target.dest, action=_Deprecated, new=new, help=argparse.SUPPRESS,
                   type=target.type, nargs=target.nargs, metavar=target.metavar, **kw)  # fmt: skip


def parse_args(p: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """``p.parse_args(argv)``, then the required flags that have a deprecated spelling."""
    a = p.parse_args(argv)
    for action in p._actions:
        if getattr(action, "zk_required", False) and getattr(a, action.dest) is None:
            p.error(f"the following arguments are required: {action.option_strings[0]}")
    return a


def resolve_device(name: str):
    """``auto``: the CUDA device when there is one, else the CPU (as training does); else torch's name."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise SystemExit(f"--device {name!r}: {e}") from None
