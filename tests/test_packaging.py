"""Packaging: one version source, the metadata and extras, an sdist that carries csrc/ and the presets,
and a built zoomkern._C that fails to load warns (once) instead of turning into the reference backend."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

import zoomkern
from zoomkern import backends

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_one_version_source():
    from zoomkern._version import __version__

    meta = _pyproject()
    assert zoomkern.__version__ == __version__
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "zoomkern._version.__version__"}
    assert "version=" not in open(os.path.join(ROOT, "setup.py")).read()
    assert "\nversion:" not in open(os.path.join(ROOT, "CITATION.cff")).read()


def test_metadata_extras_and_pins():
    meta = _pyproject()
    project = meta["project"]
    assert project["readme"] == "README.md" and project["license"] == "Apache-2.0" and project["urls"]
    assert "PyYAML" in project["dependencies"]
    assert set(project["optional-dependencies"]) == {"wsi", "train", "timm", "all", "test"}
    assert project["optional-dependencies"]["all"] == ["zoomkern[wsi,train,timm]"]
    assert "Apache License" in open(os.path.join(ROOT, "LICENSE")).read()
    assert meta["tool"]["setuptools"]["package-data"]["zoomkern"] == ["configs/*.yaml"]
    # An isolated build compiles against the torch that requirements.txt pins, never an unpinned one.
    reqs = [line.strip() for line in open(os.path.join(ROOT, "requirements.txt"))]
    torch_pin = next(r for r in reqs if r.startswith("torch=="))
    assert torch_pin in meta["build-system"]["requires"]
    assert any(r.startswith("PyYAML==") for r in reqs)


def test_sdist_carries_csrc_and_the_presets(tmp_path):
    env = dict(os.environ, ZOOMKERN_NO_EXT="1")  # metadata only: nothing is compiled
    cmd = [
        sys.executable,
        "setup.py",
        "-q",
        "egg_info",
        "--egg-base",
        str(tmp_path),
        "sdist",
        "-d",
        str(tmp_path),
    ]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    (sdist,) = [f for f in os.listdir(tmp_path) if f.endswith(".tar.gz")]
    with tarfile.open(tmp_path / sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for d, _, files in os.walk(os.path.join(ROOT, "csrc")):
        for f in files:
            assert os.path.relpath(os.path.join(d, f), ROOT) in names  # .cpp, .cu and .h alike
    for f in os.listdir(os.path.join(ROOT, "zoomkern", "configs")):
        assert f"zoomkern/configs/{f}" in names
    assert {"LICENSE", "CITATION.cff", "README.md", "zoomkern/cli/__init__.py"} <= names


def test_broken_extension_warns_with_the_file_and_the_fix(tmp_path):
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        mod, why = backends.load_extension(str(pkg), "fakepkg._C")  # nothing built: silent
        assert mod is None and "not built" in why
        (pkg / f"_C{SUFFIX}").write_bytes(b"not an ELF file")
        with pytest.warns(RuntimeWarning) as w:
            mod, why = backends.load_extension(str(pkg), "fakepkg._C")
    finally:
        sys.path.remove(str(tmp_path))
    msg = str(w[0].message)
    assert mod is None and f"_C{SUFFIX}" in msg and "does not load" in msg and "Rebuild" in msg
    assert "failed to load" in why and "rebuild" in why


def test_import_zoomkern_warns_once_for_a_broken_extension(tmp_path):
    # A copy of the package whose _C is garbage, as after upgrading torch under a built extension.
    ignore = shutil.ignore_patterns("*.so", "__pycache__")
    shutil.copytree(os.path.join(ROOT, "zoomkern"), tmp_path / "zoomkern", ignore=ignore)
    (tmp_path / "zoomkern" / f"_C{SUFFIX}").write_bytes(b"\x7fELF truncated")
    code = ("import zoomkern, torch; zoomkern.backends._ext(); "
            "print(zoomkern.spatial_softmax(torch.zeros(1, 3)).sum().item())")  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(tmp_path), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                       env=env, cwd=str(tmp_path), timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "1.0"  # it still works, on the fallback kernels
    assert p.stderr.count("RuntimeWarning") == 1, p.stderr
    assert str(tmp_path / "zoomkern" / f"_C{SUFFIX}") in p.stderr and "Rebuild" in p.stderr
