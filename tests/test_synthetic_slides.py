"""Synthetic slides: real pyramidal tiled TIFFs, read back through tifffile and OpenSlide."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")
openslide = pytest.importorskip("openslide")

from zoomkern.data import synthetic_slides as ss  # noqa: E402

SIZE = (2100, 1700)  # not square, not a multiple of the tile: edge tiles are partial


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    d = tmp_path_factory.mktemp("slides")
    out = {}
    for name, positive, comp in (("pos", True, "deflate"), ("neg", False, "deflate"), ("jpg", True, "jpeg")):
        path = str(d / f"{name}.tif")
        out[name] = ss.write_synthetic_slide(path, SIZE, positive=positive, seed=7, compression=comp,
                                             progress=False)  # fmt: skip
    return out


def _stain_fraction(rgb: np.ndarray) -> float:
    """Pixels close to the stain colour (dark brown): no tissue or glass colour comes near it."""
    d = np.abs(rgb.astype(np.int32) - ss.STAIN.astype(np.int32)).max(-1)
    return float((d < 40).mean())


def test_pyramid_seen_by_tifffile_and_openslide(slides):
    info = slides["pos"]
    assert info["levels"] == ss.level_sizes(*SIZE)
    assert info["levels"][0] == SIZE and max(info["levels"][-1]) <= 512 and len(info["levels"]) == 4
    with tifffile.TiffFile(info["path"]) as tf:
        assert [lv.shape for lv in tf.series[0].levels] == [(h, w, 3) for h, w in info["levels"]]
        assert tf.pages[0].is_tiled and tf.pages[0].tilewidth == ss.TILE
        lvl1 = tf.series[0].levels[1].asarray()
    sl = openslide.OpenSlide(info["path"])
    try:
        # OpenSlide sizes are (w, h): it must see every level as a level of one pyramid
        assert sl.level_dimensions == tuple((w, h) for h, w in info["levels"])
        region = np.asarray(sl.read_region((800, 1000), 1, (300, 200)))  # level-0 coordinates
    finally:
        sl.close()
    np.testing.assert_array_equal(region[..., :3], lvl1[500:700, 400:700])


def test_levels_are_area_downsamples_of_level_zero(slides):
    """Each level is rendered on its own from the procedural function; it must still look like the area
    mean of the level below (lossless file, so only the rendering differs): mean error under 3 of 255."""
    with tifffile.TiffFile(slides["pos"]["path"]) as tf:
        levels = [lv.asarray().astype(np.float64) for lv in tf.series[0].levels]
    for i in range(1, len(levels)):
        a = levels[i - 1]
        h, w = a.shape[0] // 2, a.shape[1] // 2
        down = a[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean((1, 3))
        err = np.abs(levels[i][:h, :w] - down).mean()
        assert err < 3.0, f"level {i}: mean |level - area(level {i - 1})| = {err:.2f}"


def test_tiny_objects_only_on_positives_and_inside(slides):
    pos = tifffile.imread(slides["pos"]["path"])
    neg = tifffile.imread(slides["neg"]["path"])
    assert slides["pos"]["disks"] >= 30 and slides["neg"]["disks"] == 0
    assert _stain_fraction(neg) == 0.0
    f = _stain_fraction(pos)
    # 30-160 disks of 6-14 px radius over 3.6 Mpx: between 1e-3 and 2.8e-2 of the pixels
    assert 1e-3 < f < 2.8e-2, f
    # white background and tissue both present; background is the glass colour
    glass = (np.abs(neg.astype(np.int32) - ss.BACKGROUND.astype(np.int32)).max(-1) <= 1).mean()
    assert 0.15 < glass < 0.9, glass


def test_jpeg_is_close_to_lossless_and_smaller(slides):
    a = tifffile.imread(slides["jpg"]["path"]).astype(np.float64)
    b = tifffile.imread(slides["pos"]["path"]).astype(np.float64)
    assert np.abs(a - b).mean() < 4.0
    assert slides["jpg"]["bytes"] < slides["pos"]["bytes"] / 2


def test_deterministic_from_seed(tmp_path):
    kw = dict(positive=True, compression="deflate", progress=False, min_level_size=256)
    a = ss.write_synthetic_slide(str(tmp_path / "a.tif"), (600, 700), seed=3, **kw)
    b = ss.write_synthetic_slide(str(tmp_path / "b.tif"), (600, 700), seed=3, **kw)
    c = ss.write_synthetic_slide(str(tmp_path / "c.tif"), (600, 700), seed=4, **kw)
    for i in range(len(a["levels"])):
        x, y, z = (tifffile.imread(p["path"], level=i) for p in (a, b, c))
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)


def test_far_from_tissue_is_the_shared_white_tile():
    s = ss.make_slide(100_000, 100_000, positive=False, seed=0)
    white = np.zeros((ss.TILE, ss.TILE, 3), np.uint8)
    assert ss.render_tile(s, 0, 0, 0, white) is white  # the corner of a gigapixel slide is glass
    centre = ss.render_tile(s, 0, 195, 195, white)
    assert centre is not white and centre.shape == (ss.TILE, ss.TILE, 3) and centre.dtype == np.uint8


def test_folder_labels_csv_and_settings_guard(tmp_path):
    root = str(tmp_path / "set")
    out = ss.make_synthetic_slides(root, 3, (300, 400), seed=1, progress=False)
    assert [o["label"] for o in out] == [0, 1, 0]
    with open(os.path.join(root, "labels.csv")) as fh:
        rows = list(csv.reader(fh))
    assert rows == [["slide", "label"], ["slide_000", "0"], ["slide_001", "1"], ["slide_002", "0"]]
    again = ss.make_synthetic_slides(root, 3, (300, 400), seed=1, progress=False)
    assert all(o.get("reused") for o in again)
    with pytest.raises(ValueError, match="seed=1 .asked: 2."):
        ss.make_synthetic_slides(root, 3, (300, 400), seed=2, progress=False)
    with pytest.raises(ValueError, match="compression"):
        ss.write_synthetic_slide(str(tmp_path / "x.tif"), 300, positive=False, compression="lzw")
