"""Bad input to zk.io: each a clear error that names the file (or the argument)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import zoomkern as zk
from tests._images import texture, write_tiff


def _named(path):
    return re.escape(str(path))


@pytest.mark.parametrize("name", ["nope.tif", "nope.svs", "nope.npy", "nope.png"])
def test_missing_file(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=_named(tmp_path / name)):
        zk.io.open(tmp_path / name)


@pytest.mark.parametrize("name", ["a.xyz", "noext", "a.gif"])
def test_unsupported_format(tmp_path, name):
    (tmp_path / name).write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(ValueError, match=_named(tmp_path / name) + ".*unsupported format"):
        zk.io.open(tmp_path / name)
    with pytest.raises(ValueError, match="backend must be one of"):
        zk.io.open(tmp_path / name, backend="magic")


@pytest.mark.parametrize(
    "name,backend",
    [("a.tif", None), ("a.tif", "openslide"), ("a.svs", None), ("a.png", None), ("a.jpg", None),
     ("a.bmp", None), ("a.npy", None)],
)  # fmt: skip
def test_non_image_file(tmp_path, name, backend):
    p = tmp_path / name
    p.write_text("this is a text file, not an image\n" * 20)
    with pytest.raises(ValueError, match=_named(p)):
        zk.io.open(p, backend=backend)


def test_truncated_tiff(tmp_path):
    p = tmp_path / "t.tif"
    write_tiff(p, texture(200, 200, 3), n_levels=2, tile=(64, 64), compression="jpeg")
    data = p.read_bytes()
    for cut in (len(data) // 2, len(data) - 100):
        q = tmp_path / f"cut{cut}.tif"
        q.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=_named(q) + ".*(truncated|not a readable)"):
            zk.io.open(q)


@pytest.mark.parametrize("ext", ["png", "jpg", "bmp"])
def test_truncated_picture(tmp_path, ext):
    from PIL import Image

    p = tmp_path / f"a.{ext}"
    Image.fromarray(texture(64, 64, 3)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=_named(p) + ".*not a readable image"):
        zk.io.open(p)


def test_truncated_npy(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.zeros((100, 100), np.uint8))
    p.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(ValueError, match=_named(p)):
        zk.io.open(p)


@pytest.mark.parametrize("backend", ["tifffile", "openslide"])
def test_level_that_does_not_exist(tmp_path, backend):
    p = tmp_path / "t.tif"
    write_tiff(p, texture(128, 128, 3), n_levels=2, tile=(64, 64))
    src = zk.io.open(p, backend=backend)
    for level in (2, -1, 10):
        with pytest.raises(ValueError, match=_named(p) + f".*pyramid level {level} does not exist.*2 level"):
            src.read_patches([[0, 0]], (8, 8), level=level)
    with pytest.raises(TypeError, match="level must be an int"):
        src.read_patches([[0, 0]], (8, 8), level=1.0)


def test_bad_arguments_are_named(tmp_path):
    src = zk.io.from_array(torch.zeros(1, 10, 10, dtype=torch.uint8))
    with pytest.raises(TypeError, match="offsets must be int64"):
        src.read_patches(torch.zeros(1, 2, dtype=torch.int32), (2, 2))
    with pytest.raises(ValueError, match=r"offsets must have shape \(k, 2\)"):
        src.read_patches(torch.zeros(1, 3, dtype=torch.int64), (2, 2))
    with pytest.raises(ValueError, match="size must be positive"):
        src.read_patches(torch.zeros(1, 2, dtype=torch.int64), (0, 2))
    with pytest.raises(ValueError, match="size must be positive"):
        src.lowres((5, -1))
    with pytest.raises(ValueError, match="shape"):
        zk.io.from_array(torch.zeros(2, 2, 2, 2))
    np.save(tmp_path / "s.npy", np.zeros((2, 5, 5), np.uint8))
    with pytest.raises(ValueError, match=_named(tmp_path / "s.npy") + ".*index 5"):
        zk.io.open(tmp_path / "s.npy", index=5)
    with pytest.raises(ValueError, match="must share channels and dtype"):
        zk.gather_patches(
            [src, zk.io.from_array(torch.zeros(3, 10, 10))], torch.zeros(2, 1, 2, dtype=torch.int64), 2
        )
