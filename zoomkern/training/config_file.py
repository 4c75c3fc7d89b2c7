"""TrainConfig as YAML: the presets in zoomkern/configs/, ``--config FILE.yaml``, ``<out>/config.yaml``.

A file holds TrainConfig fields (``n_tiles: 8``) and may name a ``preset:`` it starts from; the preset
files do the same (demo.yaml and paper.yaml start from ``_recipe``). Precedence, highest first: flags,
the file, the preset, TrainConfig's defaults. Every error names the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import types
import typing
from importlib import resources

CONFIG_DIR = resources.files("zoomkern") / "configs"
TUPLE_PAIRS = ("size", "sub_grid")  # (H, W) fields: one number means a square


class ConfigError(ValueError):
    """A config file that cannot be used: missing, not YAML, an unknown key, a value of the wrong type."""


def read_yaml(path) -> dict:
    """The mapping in ``path`` (an empty file is an empty mapping)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8") if hasattr(path, "read_text") else open(path).read()
    except FileNotFoundError:
        raise ConfigError(f"config file {os.fspath(path)!r} does not exist") from None
    except OSError as e:
        raise ConfigError(f"config file {os.fspath(path)!r} cannot be read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {os.fspath(path)!r} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {os.fspath(path)!r}: expected a mapping of keys to values, "
                          f"got a {type(data).__name__}")  # fmt: skip
    return data


def preset_names() -> list[str]:
    """The presets a user may name: every configs/*.yaml not starting with "_" (those are shared bases)."""
    return sorted(f.name[:-5] for f in CONFIG_DIR.iterdir() if f.name.endswith(".yaml") and f.name[0] != "_")


def _unwrap(hint):
    """(inner type, whether None is allowed) of an annotation such as ``int | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def coerce(cls, name: str, value, source: str):
    """``value`` as field ``name`` of ``cls`` wants it (tuples for tuples); ConfigError naming source/key."""
    hints = _hints(cls)
    if name not in hints:
        close = difflib.get_close_matches(name, hints, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{source}: unknown key {name!r}{hint} (keys are TrainConfig fields and 'preset')")
    tp, optional = _unwrap(hints[name])

    def bad(what):
        return ConfigError(f"{source}: {name}: expected {what}, got {value!r}")

    if value is None:
        if optional:
            return None
        raise bad("a value (this field cannot be null)")
    if typing.get_origin(tp) is tuple:
        elem = typing.get_args(tp)[0]
        if name in TUPLE_PAIRS and isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        if not isinstance(value, list | tuple) or not all(type(v) is elem for v in value):
            raise bad(f"a list of {elem.__name__}s, e.g. [8, 16]")
        if name in TUPLE_PAIRS and len(value) != 2:
            raise bad("one number or two (H, W)")
        return tuple(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if type(value) is not int:
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if tp is str and not isinstance(value, str):
        raise bad("a string (quote it: YAML reads 1:3 or 010 as a number)")
    return value


def expand(cls, data: dict, source: str, stack: tuple[str, ...] = ()) -> dict:
    """Field values of a file's mapping: its ``preset:`` (resolved the same way) under its own keys."""
    data = dict(data)
    base = {}
    preset = data.pop("preset", None)
    if preset is not None:
        base = preset_values(cls, preset, source, stack)
    return {**base, **{k: coerce(cls, k, v, source) for k, v in data.items()}}


def preset_values(cls, name, source: str = "--preset", stack: tuple[str, ...] = ()) -> dict:
    path = CONFIG_DIR / f"{name}.yaml"
    if not isinstance(name, str) or not path.is_file():
        raise ConfigError(f"{source}: unknown preset {name!r}; choose one of {', '.join(preset_names())}")
    if name in stack:
        raise ConfigError(f"{source}: presets name each other in a loop: {' -> '.join((*stack, name))}")
    return expand(cls, read_yaml(path), f"preset file {path}", (*stack, name))


def load_presets(cls) -> dict[str, dict]:
    """{preset name: resolved field values} of every user-facing preset file."""
    return {name: preset_values(cls, name) for name in preset_names()}


def resolve(cls, *, flags: dict, config: str | None = None, preset: str | None = None, presets=None):
    """(TrainConfig, where it came from) with flags > the ``config`` file > the preset > the defaults.

    The preset is ``preset`` (the --preset flag), else the file's ``preset:``, else the data set's own
    preset when the flags or the file name a data set that has one (--dataset colon alone is the colon
    recipe)."""
    presets = presets if presets is not None else load_presets(cls)
    file_values, file_preset = {}, None
    if config is not None:
        data = read_yaml(config)
        file_preset = data.pop("preset", None)
        file_values = {k: coerce(cls, k, v, f"config file {config!r}") for k, v in data.items()}
    dataset = flags.get("dataset") or file_values.get("dataset")
    name = preset or file_preset or (dataset if dataset in presets else None)
    base = {}
    if name is not None:
        src = "--preset" if preset else f"config file {config!r}" if file_preset else "--dataset"
        # the loaded presets when the name is one of them; else read it (errors name the source)
        base = dict(presets[name]) if name in presets else preset_values(cls, name, src)
    values = {**base, **file_values, **flags}
    where = ", ".join(
        x for x in ("flags" if flags else "", config and f"file {config}", name and f"preset {name}") if x
    )
    return cls(**values), (where + ", " if where else "") + "TrainConfig defaults"


@functools.cache
def _dumper():
    """A SafeDumper writing mappings as blocks (one key a line) and lists inline (``size: [400, 400]``)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def inline(dumper, value):
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)

    Dumper.add_representer(list, inline)
    return Dumper


def dump(cfg, header: str = "") -> str:
    """YAML of every field of ``cfg`` but ``resume`` (a request, not a setting: ``--config`` of a run's
    config.yaml must start that run again, not resume it), grouped as --help groups them."""
    import yaml

    from .config import HELP as groups

    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "resume"}
    lines = [f"# {line}" for line in header.splitlines()]
    placed = set()
    for group, names in [*groups.items(), ("other", {n: "" for n in values})]:
        keys = [n for n in names if n in values and n not in placed]
        if not keys:
            continue
        placed.update(keys)
        block = {k: list(values[k]) if isinstance(values[k], tuple) else values[k] for k in keys}
        lines += ["", f"# {group}", yaml.dump(block, Dumper=_dumper(), sort_keys=False).rstrip()]
    return "\n".join(lines).lstrip("\n") + "\n"


def write(cfg, path: str, header: str = "") -> str:
    """Write ``dump(cfg)`` to ``path`` atomically (a crash never leaves half a config)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dump(cfg, header))
    os.replace(tmp, path)
    return path
