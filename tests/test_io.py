"""zk.io sources read real files: tiled pyramidal TIFFs through tifffile+zarr and OpenSlide, .npy memmaps,
Pillow pictures. read_patches must equal slicing the zero-padded level array; lowres must come from the
nearest level at or above the wanted size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoomkern as zk
from tests._images import border_offsets, slice_padded, texture, write_tiff
from zoomkern.io.source import area_resize

H, W = 301, 437  # odd sizes: partial edge tiles on every level
SIZES = {"odd": (H, W), "even": (304, 448)}  # "even": exact 2x and 4x downsamples


@pytest.fixture(scope="module")
def rgb_tiffs(tmp_path_factory):
    import tifffile

    d = tmp_path_factory.mktemp("tiff")
    out = {}
    for size, (h, w) in SIZES.items():
        arr = texture(h, w, 3)
        for comp in ("zlib", "jpeg"):
            path = d / f"rgb_{size}_{comp}.tif"
            levels = write_tiff(path, arr, n_levels=3, tile=(64, 48), compression=comp)
            if comp == "jpeg":  # lossy: the truth is what the decoder makes of each level
                with tifffile.TiffFile(path) as tf:
                    levels = [lv.asarray() for lv in tf.series[0].levels]
            out[size, comp] = (path, levels)
    return out


@pytest.mark.parametrize("backend", ["tifffile", "openslide"])
@pytest.mark.parametrize("comp", ["zlib", "jpeg"])
@pytest.mark.parametrize("size", ["odd", "even"])
def test_tiff_read_patches_equal_slicing(rgb_tiffs, backend, comp, size):
    path, levels = rgb_tiffs[size, comp]
    src = zk.io.open(path, backend=backend)
    assert src.shape == (3, *SIZES[size]) and src.dtype == torch.uint8
    assert src.levels == tuple(a.shape[:2] for a in levels) and len(src.levels) == 3
    for level, (ph, pw) in [(0, (37, 50)), (1, (20, 17)), (2, (9, 64))]:
        Hl, Wl = src.levels[level]
        off = border_offsets(Hl, Wl, ph, pw)
        got = src.read_patches(torch.from_numpy(off), (ph, pw), level=level)
        assert got.shape == (len(off), 3, ph, pw)
        want = np.stack([slice_padded(levels[level], y, x, ph, pw) for y, x in off])
        if backend == "openslide" and size == "odd" and level > 0:
            # OpenSlide takes level-0 coordinates: with a non-integer downsample (301/150) the corner
            # falls between level pixels and OpenSlide interpolates. Close, not equal.
            diff = np.abs(got.numpy().astype(int) - want.astype(int))
            assert diff.mean() < 4, (level, diff.mean())
            continue
        np.testing.assert_array_equal(got.numpy(), want, err_msg=f"{backend} {comp} level {level}")


def test_tiff_gray_uint16_and_odd_tiles(tmp_path):
    arr = texture(150, 97, 1, seed=3, dtype=np.uint16)
    levels = write_tiff(tmp_path / "g.tif", arr, n_levels=2, tile=(32, 16))
    src = zk.io.open(tmp_path / "g.tif")
    assert src.shape == (1, 150, 97) and src.dtype == torch.uint16 and src.levels == ((150, 97), (75, 48))
    off = border_offsets(75, 48, 11, 13)
    got = src.read_patches(off, (11, 13), level=1)
    want = np.stack([slice_padded(levels[1], y, x, 11, 13) for y, x in off])
    np.testing.assert_array_equal(got.numpy(), want)


def _spy_levels(src, monkeypatch):
    seen = []
    orig = src._read_level

    def spy(level):
        seen.append(level)
        return orig(level)

    monkeypatch.setattr(src, "_read_level", spy)
    return seen


@pytest.mark.parametrize("backend", ["tifffile", "openslide"])
def test_lowres_reads_the_nearest_level_above(rgb_tiffs, backend, monkeypatch):
    path, levels = rgb_tiffs["odd", "zlib"]
    src = zk.io.open(path, backend=backend)
    seen = _spy_levels(src, monkeypatch)
    # levels: (301, 437), (150, 218), (75, 109)
    for size, level in [((60, 80), 2), ((75, 109), 2), ((76, 100), 1), ((150, 218), 1), ((200, 100), 0),
                        ((400, 500), 0)]:  # fmt: skip
        seen.clear()
        low = src.lowres(size)
        assert seen == [level], (size, seen)
        assert low.shape == (3, *size) and low.dtype == torch.uint8
        want = area_resize(torch.from_numpy(levels[level]).permute(2, 0, 1), size, torch.uint8)
        assert torch.equal(low, want)  # a whole level read from (0, 0) is exact through OpenSlide too


def test_lowres_area_resample_values():
    a = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)
    src = zk.io.from_array(a)
    np.testing.assert_allclose(src.lowres((2, 2))[0].numpy(), [[2.5, 4.5], [10.5, 12.5]])
    assert src.lowres((4, 4)).equal(a)


def test_only_touched_tiles_are_decoded_and_cache_is_bounded(tmp_path):
    arr = texture(256, 256, 3)
    write_tiff(tmp_path / "c.tif", arr, n_levels=1, tile=(64, 64))
    tile_bytes = 64 * 64 * 3
    src = zk.io.open(tmp_path / "c.tif", cache_bytes=3 * tile_bytes)
    src.read_patches([[10, 10]], (20, 20))  # inside tile (0, 0)
    assert (src.cache.misses, len(src.cache)) == (1, 1)
    src.read_patches([[60, 60]], (8, 8))  # touches tiles (0,0), (0,1), (1,0), (1,1)
    assert src.cache.misses == 4 and src.cache.hits == 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        src.read_patches(rng.integers(-20, 250, (5, 2)), (30, 30))
        assert src.cache.nbytes <= 3 * tile_bytes and len(src.cache) <= 3
    out = src.read_patches([[0, 0]], (256, 256))  # larger than the cache: still correct
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), arr)


def test_npy_layouts_and_stack(tmp_path):
    chw = texture(40, 50, 3).transpose(2, 0, 1).copy()
    np.save(tmp_path / "chw.npy", chw)
    np.save(tmp_path / "hwc.npy", chw.transpose(1, 2, 0).copy())
    np.save(tmp_path / "hw.npy", chw[0].copy())
    np.save(tmp_path / "stack.npy", np.stack([chw[:1] * 0, chw[:1]]))
    off = border_offsets(40, 50, 7, 9)
    want = np.stack([slice_padded(chw.transpose(1, 2, 0), y, x, 7, 9) for y, x in off])
    for name in ("chw", "hwc"):
        src = zk.io.open(tmp_path / f"{name}.npy")
        assert src.shape == (3, 40, 50) and src.levels == ((40, 50),)
        assert isinstance(src._arr(), np.memmap)
        np.testing.assert_array_equal(src.read_patches(off, (7, 9)).numpy(), want)
        assert torch.equal(src.lowres((40, 50)), torch.from_numpy(chw))
    src = zk.io.open(tmp_path / "hw.npy")
    assert src.shape == (1, 40, 50)
    np.testing.assert_array_equal(src.read_patches(off, (7, 9)).numpy(), want[:, :1])
    src = zk.io.open(tmp_path / "stack.npy", index=1)
    assert src.shape == (1, 40, 50)
    np.testing.assert_array_equal(src.read_patches(off, (7, 9)).numpy(), want[:, :1])


@pytest.mark.parametrize("ext", ["png", "bmp", "jpg"])
def test_plain_images(tmp_path, ext):
    from PIL import Image

    arr = texture(45, 61, 3, seed=1)
    Image.fromarray(arr).save(tmp_path / f"a.{ext}")
    truth = np.array(Image.open(tmp_path / f"a.{ext}"))  # the decoder's pixels (jpg is lossy)
    src = zk.io.open(tmp_path / f"a.{ext}")
    assert src.shape == (3, 45, 61) and src.levels == ((45, 61),) and src.dtype == torch.uint8
    off = border_offsets(45, 61, 10, 12)
    want = np.stack([slice_padded(truth, y, x, 10, 12) for y, x in off])
    np.testing.assert_array_equal(src.read_patches(off, (10, 12)).numpy(), want)
    Image.fromarray(arr[..., 0]).save(tmp_path / f"g.{ext}")
    assert zk.io.open(tmp_path / f"g.{ext}").shape == (1, 45, 61)


def test_from_array_tensor_hwc_and_numpy():
    a = torch.from_numpy(texture(33, 20, 3))
    src = zk.io.from_array(a, layout="HWC")
    assert src.shape == (3, 33, 20) and src.path is None
    off = border_offsets(33, 20, 5, 6)
    want = np.stack([slice_padded(a.numpy(), y, x, 5, 6) for y, x in off])
    np.testing.assert_array_equal(src.read_patches(off, (5, 6)).numpy(), want)
    src2 = zk.io.from_array(a.permute(2, 0, 1).numpy())
    np.testing.assert_array_equal(src2.read_patches(off, (5, 6)).numpy(), want)


def test_gather_patches_takes_sources(rgb_tiffs):
    path, levels = rgb_tiffs["odd", "zlib"]
    t = torch.from_numpy(levels[0]).permute(2, 0, 1)
    srcs = [zk.io.open(path), zk.io.from_array(t.flip(-1).contiguous())]
    image = torch.stack([t, t.flip(-1)])
    g = torch.Generator().manual_seed(0)
    off = torch.stack(
        [torch.randint(-30, 320, (7,), generator=g), torch.randint(-30, 450, (7,), generator=g)], -1
    )
    off = torch.stack([off, off.flip(0)])
    kw = dict(dtype=torch.float32, mean=[10.0, 20.0, 30.0], std=[50.0, 60.0, 70.0])
    assert torch.equal(
        zk.gather_patches(srcs, off, (31, 29), **kw), zk.gather_patches(image, off, (31, 29), **kw)
    )
    assert torch.equal(zk.gather_patches(srcs, off, (31, 29)), zk.gather_patches(image, off, (31, 29)))
    one = zk.gather_patches(srcs[0], off[:1], (8, 8), dtype=torch.float16)
    assert one.shape == (1, 7, 3, 8, 8) and one.dtype == torch.float16
    with pytest.raises(ValueError, match="offsets must have shape"):
        zk.gather_patches(srcs, off[:1], (8, 8))


class _Patches(torch.utils.data.Dataset):
    def __init__(self, srcs, off):
        self.srcs, self.off = srcs, off

    def __len__(self):
        return len(self.srcs)

    def __getitem__(self, i):
        import os

        s = self.srcs[i]
        return s.read_patches(self.off, (16, 16)), s.lowres((20, 30)), os.getpid()


def test_sources_pickle_and_reopen_in_dataloader_workers(rgb_tiffs, tmp_path):
    import os
    import pickle

    from PIL import Image

    path, _ = rgb_tiffs["odd", "jpeg"]
    arr = texture(40, 60, 3)
    Image.fromarray(arr).save(tmp_path / "p.png")
    np.save(tmp_path / "a.npy", arr)
    srcs = [zk.io.open(path), zk.io.open(path, backend="openslide"), zk.io.open(tmp_path / "p.png"),
            zk.io.open(tmp_path / "a.npy"), zk.io.from_array(torch.from_numpy(arr), "HWC")]  # fmt: skip
    for s in srcs[:4]:
        s.read_patches([[0, 0]], (4, 4))  # open handles and fill caches in the parent first
        blob = pickle.dumps(s)
        assert len(blob) < 2000, (s, len(blob))  # a path and a few numbers: no pixels, no handle
    off = torch.tensor([[-5, -5], [10, 20], [290, 430]])
    want = [(s.read_patches(off, (16, 16)), s.lowres((20, 30))) for s in srcs]
    dl = torch.utils.data.DataLoader(_Patches(srcs, off), batch_size=1, num_workers=2,
                                     collate_fn=lambda b: b[0])  # fmt: skip
    pids = set()
    for (p, low, pid), (wp, wl) in zip(dl, want, strict=True):
        assert torch.equal(p, wp) and torch.equal(low, wl)
        pids.add(pid)
    assert os.getpid() not in pids and len(pids) >= 1
