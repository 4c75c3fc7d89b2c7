"""The ``zoomkern`` command: subcommands, ``train --config`` / ``--print-config``, precedence, help text,
the python/ shims, deprecated flag spellings and the allocator tuning before torch loads."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import yaml

from zoomkern.cli import COMMANDS
from zoomkern.cli import main as zk
from zoomkern.cli import train as train_cli
from zoomkern.training import PRESETS, TrainConfig
from zoomkern.training.config import HELP
from zoomkern.training.config_file import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)

# A tiny Megapixel MNIST run: 96 x 96 canvases, 8 + 4 images, one CPU thread, seconds.
TINY = dict(preset="demo", size=96, n_train=8, n_test=4, n_noise=2, scale=0.25, tile_size=48, s2=0.5,
            sub_grid=[4, 4], patch_size=16, n_tiles=2, n_sub=2, n_tiles_eval=4, n_sub_eval=1,
            feature_widths=[4, 8], epochs=1, batch_size=4, noise_curriculum="", plot_images=0, device="cpu",
            threads=1, amp=False)  # fmt: skip


def _yaml(path, **values) -> str:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return str(path)


def _run(*args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=ROOT,
                          timeout=300, **kw)  # fmt: skip


def test_help_lists_every_command(capsys):
    assert zk(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ["train", "predict", "info", "scan", "make-data", "diagnose", "probe-stage1", "plot-runs"]:
        assert f"\n  {name} " in out and name in COMMANDS
    assert zk([]) == 2 and "commands:" in capsys.readouterr().out
    assert zk(["trian"]) == 2 and "did you mean 'train'" in capsys.readouterr().err


def test_python_m_zoomkern_is_the_console_entry(capsys):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        assert tomllib.load(f)["project"]["scripts"] == {"zoomkern": "zoomkern.cli:main"}
    zk(["--help"])
    p = _run("-m", "zoomkern", "--help")
    assert p.returncode == 0 and p.stdout == capsys.readouterr().out
    p = _run("-m", "zoomkern", "make-data", "slides", "--help")
    assert p.returncode == 0 and p.stdout.startswith("usage: zoomkern make-data slides")


def test_every_field_has_help_in_one_group_and_every_flag_says_its_default():
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    grouped = [n for g in HELP.values() for n in g]
    missing = sorted(set(names) - set(grouped))
    assert not missing, f"TrainConfig fields without a --help sentence in config.HELP: {missing}"
    assert sorted(grouped) == sorted(names), "a HELP key that is not a field, or a field in two groups"
    assert list(HELP) == ["data", "model", "optimisation", "output"]
    assert all(s.strip() for g in HELP.values() for s in g.values())
    p = train_cli.build_parser()
    titles = [g.title for g in p._action_groups]
    assert {"configuration", "data", "model", "optimisation", "output"} <= set(titles)
    for action in p._actions:
        if action.dest != "help":
            assert action.help and ("default" in action.help or action.nargs == 0), action.option_strings
    by_flag = {a.option_strings[0]: a.help for a in p._actions}
    assert "(default: 5; colon: 5, demo: 8, paper: 5, slides: 8, traffic_signs: 12)" in by_flag["--n-tiles"]
    assert "(default: none)" in by_flag["--time-limit-min"]  # no preset sets a wall-clock guard


def test_print_config_resolves_and_round_trips(tmp_path, capsys):
    out = tmp_path / "never"
    assert train_cli.main(["--preset", "demo", "--n-tiles", "7", "--out", str(out), "--print-config"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# zoomkern train: resolved configuration (flags, preset demo, TrainConfig")
    values = yaml.safe_load(text)
    assert values["n_tiles"] == 7 and values["size"] == [400, 400] and "resume" not in values
    assert "preset" not in values and not out.exists()  # printed, nothing trained
    (tmp_path / "c.yaml").write_text(text)
    assert train_cli.parse(["--config", str(tmp_path / "c.yaml")]) == train_cli.parse(
        ["--preset", "demo", "--n-tiles", "7", "--out", str(out)]
    )


def test_precedence_flags_file_preset_defaults(tmp_path):
    f = _yaml(tmp_path / "f.yaml", preset="demo", n_tiles=3, n_sub=1)
    cfg = train_cli.parse(["--config", f, "--n-tiles", "7"])
    assert cfg.n_tiles == 7  # flag > file
    assert cfg.n_sub == 1  # file > preset (demo: 2)
    assert tuple(cfg.size) == (400, 400)  # preset > default (1500 x 1500)
    assert cfg.clip == TrainConfig.clip  # the default where nobody sets it
    assert tuple(train_cli.parse(["--config", f, "--preset", "paper"]).size) == (1500, 1500)  # --preset wins
    colon = train_cli.parse(["--config", _yaml(tmp_path / "c.yaml", dataset="colon", root="x")])
    assert colon.patch_size == 27 and colon.root == "x"  # a data set that has a preset takes it


@pytest.mark.parametrize(
    "text, match",
    [
        ("n_tile: 3\n", r"unknown key 'n_tile'; did you mean 'n_tiles'"),
        ("n_tiles: five\n", r"n_tiles: expected an integer, got 'five'"),
        ("size: [1, 2, 3]\n", r"size: expected one number or two"),
        ("noise_curriculum: 1:3\n", r"noise_curriculum: expected a string \(quote it"),
        ("preset: nope\n", r"unknown preset 'nope'; choose one of colon, demo"),
        ("n_tiles: [1,\n", r"is not valid YAML"),
        ("- 1\n", r"expected a mapping"),
    ],
)
def test_bad_config_files_name_the_file_and_the_key(tmp_path, capsys, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        train_cli.parse(["--config", str(f)])
    assert str(f) in str(e.value)
    with pytest.raises(SystemExit) as e:  # the command: a usage error, no traceback
        train_cli.main(["--config", str(f)])
    assert e.value.code == 2 and str(f) in capsys.readouterr().err


def test_missing_config_file_and_bad_values(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_cli.main(["--config", str(tmp_path / "nothere.yaml")])
    assert f"config file '{tmp_path / 'nothere.yaml'}' does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.main(["--folds", "1"])
    assert "folds=1" in capsys.readouterr().err
    assert train_cli.parse(["--config", _yaml(tmp_path / "e.yaml", lr="1e-4")]).lr == 1e-4  # YAML 1.1 string


def test_train_config_writes_config_yaml_that_round_trips(tmp_path, capsys):
    f = _yaml(tmp_path / "tiny.yaml", **TINY, root=str(tmp_path / "data"), out=str(tmp_path / "run"))
    argv = ["--config", f, "--epochs", "2", "--time-limit-min", "1e-9"]
    assert train_cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "time limit: 1e-09 min" in err and "reached after epoch 1 of 2" in err
    written = tmp_path / "run" / "config.yaml"
    assert train_cli.parse(["--config", str(written)]) == train_cli.parse(argv)
    assert yaml.safe_load(written.read_text())["epochs"] == 2
    # --resume continues with what it is given, rewrites config.yaml and says what changed
    assert train_cli.main(["--config", str(written), "--resume", "--epochs", "3"]) == 0
    err = capsys.readouterr().err
    assert "resumed from" in err and "resuming with changed settings: epochs 2 -> 3" in err
    assert yaml.safe_load(written.read_text())["epochs"] == 3


def test_presets_are_the_commented_yaml_files():
    assert sorted(PRESETS) == ["colon", "demo", "paper", "slides", "traffic_signs"]
    assert not any("time_limit_min" in p for p in PRESETS.values())
    assert PRESETS["demo"]["size"] == (400, 400) and PRESETS["slides"]["scale"] == 1 / 64
    assert PRESETS["paper"]["lr"] == 2e-3 and PRESETS["paper"]["scale"] == 0.25  # _recipe's, its own
    # no preset depends on the ink prior to learn: every one has it off and the attention teacher on
    assert all(p.get("prior") is False and p.get("teacher", 0) > 0 for p in PRESETS.values())
    pages = {"demo.md", "paper.md", "stage1.md", "colon.md", "traffic.md", "gigapixel.md"}
    folder = os.path.join(ROOT, "zoomkern", "configs")
    for name in os.listdir(folder):
        lines = open(os.path.join(folder, name)).read().splitlines()
        for i, line in enumerate(lines):  # every key sits under a comment (its group's, at least)
            if line and not line.startswith("#"):
                j = i
                while j > 0 and lines[j - 1] and not lines[j - 1].startswith("#"):
                    j -= 1
                assert j > 0 and lines[j - 1].startswith("#"), f"{name}: {line!r} has no comment"
            for link in line.split("docs/experiments/")[1:]:
                assert link.split(")")[0].rstrip(".") in pages, f"{name}: {line}"


def test_a_field_without_help_still_has_its_flag(monkeypatch):
    # What another developer's new field looks like before its HELP sentence: a flag in "other".
    model = {k: v for k, v in HELP["model"].items() if k != "contrastive"}
    monkeypatch.setitem(HELP, "model", model)
    p = train_cli.build_parser()
    assert "other" in [g.title for g in p._action_groups]
    assert train_cli.parse(["--contrastive", "--binary-digit", "3"]).contrastive
