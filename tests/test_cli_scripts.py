"""The python/ shims still run, old flag spellings still work (and warn), ``zoomkern train`` tunes the
allocator before torch is imported, and the generators run through ``zoomkern make-data``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zoomkern import _alloc
from zoomkern.cli import main as zk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHIMS = {
    "train.py": "zoomkern train",
    "predict.py": "zoomkern predict",
    "diagnose.py": "zoomkern diagnose",
    "plot_runs.py": "zoomkern plot-runs",
    "probe_stage1.py": "zoomkern probe-stage1",
    "make_megapixel_mnist.py": "zoomkern make-data megapixel-mnist",
    "make_colon_like.py": "zoomkern make-data colon-like",
    "make_traffic_like.py": "zoomkern make-data traffic-like",
    "make_synthetic_slide.py": "zoomkern make-data slides",
}


def _py(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    for k in ("ZOOMKERN_DEFAULT_MALLOC", "THP_MEM_ALLOC_ENABLE"):  # a test here may have tuned this process
        env.pop(k, None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)  # fmt: skip


@pytest.mark.parametrize("script", sorted(SHIMS))
def test_shim_runs(script):
    p = _py(os.path.join("python", script), "--help")
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith(f"usage: {SHIMS[script]}"), p.stdout[:200]


def test_every_python_script_is_a_shim_or_a_benchmark_tool():
    scripts = {f for f in os.listdir(os.path.join(ROOT, "python")) if f.endswith(".py")}
    assert scripts - set(SHIMS) == {"gigapixel_run.py", "plot_benchmarks.py"}
    for name in SHIMS:  # thin: the code lives in zoomkern/cli/
        assert len(open(os.path.join(ROOT, "python", name)).read().splitlines()) <= 20, name


@pytest.mark.parametrize(
    "argv, tuned",
    [(["/venv/bin/zoomkern", "train", "--preset", "demo"], True), (["-m", "train"], True),
     (["/venv/bin/zoomkern", "predict"], False), (["pytest", "train"], False)],
)  # fmt: skip
def test_train_command_tunes_the_allocator_before_torch(argv, tuned):
    assert _alloc.is_train_command(argv) == tuned
    code = (f"import sys; sys.argv = {argv!r}; import zoomkern; from zoomkern import _alloc as a; import os; "
            "print(a.TUNED, a.BEFORE_TORCH, os.environ.get('THP_MEM_ALLOC_ENABLE'))")  # fmt: skip
    p = _py("-c", code)
    assert p.returncode == 0, p.stderr[-2000:]
    expect = "True True 1" if tuned else "False False None"
    if not sys.platform.startswith("linux"):
        expect = "False False None"
    assert p.stdout.split("\n")[0] == expect


def test_make_data_and_the_old_spellings(tmp_path, capsys):
    new = ["make-data", "colon-like", "--root", str(tmp_path / "new"), "--n", "4", "--folds", "2",
           "--data-seed", "3", "--no-progress"]  # fmt: skip
    assert zk(new) == 0
    old = ["make-data", "colon-like", "--out", str(tmp_path / "old"), "--n", "4", "--folds", "2",
           "--seed", "3", "--no-progress"]  # fmt: skip
    with pytest.warns(FutureWarning) as w:
        assert zk(old) == 0
    said = " ".join(str(x.message) for x in w)
    assert "--out is deprecated, use --root" in said and "--seed is deprecated, use --data-seed" in said
    for f in sorted(os.listdir(tmp_path / "new")):  # the same data set, file for file
        a, b = tmp_path / "new" / f, tmp_path / "old" / f
        assert a.read_bytes() == b.read_bytes() if a.is_file() else b.is_dir()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        zk(["make-data", "colon-like", "--n", "4"])
    assert "required: --root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        zk(["make-data", "colon-like", "--help"])
    shown = capsys.readouterr().out
    assert "--root DIR" in shown and "--data-seed" in shown
    assert "--seed " not in shown and "--out" not in shown  # hidden: old commands run, new ones use --root


def test_make_data_megapixel_mnist_with_train_names(tmp_path):
    args = ["make-data", "megapixel-mnist", "--root", str(tmp_path), "--n-train", "2", "--n-test", "1",
            "--size", "96", "--n-noise", "1", "--scale", "0.25", "--no-progress"]  # fmt: skip
    assert zk(args) == 0
    from zoomkern.data import MegapixelMNIST

    ds = MegapixelMNIST(str(tmp_path), "train", scale=0.25)
    assert len(ds) == 2 and tuple(ds.meta["size"]) == (96, 96) and ds.meta["n_noise"] == 1
    with pytest.warns(FutureWarning, match="--noise is deprecated, use --n-noise"):
        assert zk([*args[:-1], "--noise", "0", "--overwrite", "--no-progress"]) == 0
    assert MegapixelMNIST(str(tmp_path), "train", scale=0.25).meta["n_noise"] == 0


def test_predict_device_auto():
    import torch

    from zoomkern.cli._common import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(SystemExit, match="--device 'gpu0'"):
        resolve_device("gpu0")
