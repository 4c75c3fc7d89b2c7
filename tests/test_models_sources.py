"""The models on zk.io sources: the same numbers as on a tensor, stage II reading tile views from the
pyramid level nearest s2, bad sizes named by file, and the training loader handing out sources."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch

import zoomkern as zk
from tests._images import texture, write_tiff
from zoomkern.models import base


def _canvas(B=2, H=240, W=260, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(B, 1, H, W, generator=g) ** 12) * 255).to(torch.uint8)


MODELS = [
    (zk.models.ZoomIn, dict(tile_size=60, patch_size=24, n_tiles=3, n_sub=2, prior=True)),
    (zk.models.ATS, dict(patch_size=24, n_patches=4)),
    (zk.models.CNNLowRes, {}),
    (zk.models.CNNFull, {}),
]


@pytest.mark.parametrize("cls,kw", MODELS, ids=lambda v: getattr(v, "__name__", ""))
def test_sources_give_the_tensor_numbers(cls, kw):
    image = _canvas()
    low = torch.nn.functional.interpolate(image.float(), scale_factor=0.12, mode="area").to(torch.uint8)
    srcs = [zk.io.from_array(image[b]) for b in range(len(image))]
    torch.manual_seed(0)
    model = cls(10, 1, **kw).train()
    outs, grads = [], []
    for im in (image, srcs):
        torch.manual_seed(1)
        out = model(im, low)
        model.zero_grad()
        (out["logits"].sum() + out["aux_loss"]).backward()
        outs.append(out)
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert torch.equal(outs[0]["logits"], outs[1]["logits"])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True)) and grads[0]
    if "patch_offsets" in outs[0]:
        assert torch.equal(outs[0]["patch_offsets"], outs[1]["patch_offsets"])


def test_contrastive_with_sources():
    image = _canvas(B=3)
    srcs = [zk.io.from_array(image[b]) for b in range(3)]
    y = torch.tensor([1, 0, 1])
    torch.manual_seed(0)
    model = zk.models.ZoomIn(2, 1, tile_size=60, patch_size=24, n_tiles=2, contrastive=True).train()
    aux = []
    for im in (image, srcs):
        torch.manual_seed(3)
        aux.append(model(im, labels=y)["aux_loss"])
    assert torch.equal(aux[0], aux[1]) and float(aux[0].detach()) != 0.0


@pytest.fixture()
def pyramid(tmp_path):
    arr = texture(256, 320, 3, seed=5)
    levels = write_tiff(tmp_path / "p.tif", arr, n_levels=4, tile=(32, 32), compression="zlib")
    return zk.io.open(tmp_path / "p.tif"), levels


def _spy_reads(src, monkeypatch):
    seen = []
    orig = src.read_patches

    def spy(offsets, size, *, level=0):
        seen.append((level, tuple(size)))
        return orig(offsets, size, level=level)

    monkeypatch.setattr(src, "read_patches", spy)
    return seen


def test_tile_views_come_from_the_level_nearest_s2(pyramid, monkeypatch):
    src, levels = pyramid  # downsamples 1, 2, 4, 8
    seen = _spy_reads(src, monkeypatch)
    off = torch.tensor([[[0, 0], [64, 128], [200, 300], [-16, 8]]])  # level-0 tile corners
    views = base.tile_views([src], off, (64, 64), 4, "cpu")
    assert seen == [(2, (16, 16))]  # level 2 (4x), a 16x16 read per tile: 1/16 of the full-res bytes
    lv2 = torch.from_numpy(levels[2]).permute(2, 0, 1).float() / 255
    assert views.shape == (4, 3, 16, 16)
    torch.testing.assert_close(views[1], lv2[:, 16:32, 32:48], rtol=0, atol=0)
    assert float(views[2, :, 14:].abs().max()) == 0.0  # past the bottom border: zero
    # No exact level for pool 3: the 2x level is read (32x32) and area-resampled to the 21x21 view.
    seen.clear()
    views3 = base.tile_views([src], off, (64, 64), 3, "cpu")
    assert seen == [(1, (32, 32))] and views3.shape == (4, 3, 21, 21)
    # The full-resolution path pooled agrees with the pyramid read up to the pyramid's rounding.
    full = base.tile_views(
        [zk.io.from_array(torch.from_numpy(levels[0]).permute(2, 0, 1))], off, (64, 64), 4, "cpu"
    )
    assert float((full - views).abs().max()) <= 1.0 / 255 + 1e-6


def test_zoomin_on_a_pyramid_reads_patches_at_level_0(pyramid, monkeypatch):
    src, _ = pyramid
    seen = _spy_reads(src, monkeypatch)
    torch.manual_seed(0)
    model = zk.models.ZoomIn(2, 3, tile_size=64, s2=0.25, patch_size=16, n_tiles=3, n_sub=2).eval()
    out = model([src, src])
    assert out["logits"].shape == (2, 2)
    assert sorted(set(seen)) == [(0, (16, 16)), (2, (16, 16))]


def test_image_smaller_than_a_patch_names_the_file(tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((1, 20, 300), np.uint8))
    src = zk.io.open(tmp_path / "small.npy")
    for model in (zk.models.ZoomIn(10, 1, tile_size=60, patch_size=24), zk.models.ATS(10, 1, patch_size=24)):
        with pytest.raises(
            ValueError, match=re.escape(str(tmp_path / "small.npy")) + ".*smaller than the patch"
        ):
            model([src])
    big = zk.io.from_array(torch.zeros(1, 100, 100, dtype=torch.uint8))
    # sizes may differ (slides share a padded canvas, tests/test_slides.py); channels and dtype may not
    with pytest.raises(ValueError, match="must share channels and dtype"):
        zk.models.ATS(10, 1, patch_size=8)(
            [big, zk.io.from_array(torch.zeros(1, 90, 100, dtype=torch.float32))]
        )


def test_training_loader_hands_out_sources(tmp_path):
    from zoomkern.data.megapixel_mnist import MegapixelMNIST, make_megapixel_mnist
    from zoomkern.training import TrainConfig
    from zoomkern.training.data import loader

    make_megapixel_mnist(tmp_path / "d", 6, 0, size=(120, 140), n_noise=2, progress=False)
    ds = MegapixelMNIST(tmp_path / "d", "train")
    cfg = TrainConfig(batch_size=4)
    batches = loader(ds, cfg, True, 0, torch.device("cpu"))
    assert batches.dataset.boxes is ds.boxes  # the wrapper shows the dataset's attributes (diagnosis)
    images, low, y = next(iter(batches))
    assert isinstance(images, list) and len(images) == 4 and all(isinstance(s, zk.io.Source) for s in images)
    assert low.shape == (4, 1, *ds[0][1].shape[-2:]) and y.dtype == torch.int64
    assert len(pickle.dumps(images[0])) < 1000  # a path and a row index, not the 120x140 pixels
    i = int(images[0].index)
    assert torch.equal(images[0].read_patches([[0, 0]], (120, 140))[0], ds[i][0])
