"""SlideFolder, tissue masks, padded batches of slides, and the stage-I mask of the models."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytest.importorskip("tifffile")
pytest.importorskip("skimage")

import zoomkern as zk  # noqa: E402
from zoomkern.data import synthetic_slides as ss  # noqa: E402
from zoomkern.data.slides import SlideFolder, collate_slides, pad_views, tissue_mask  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three small pyramidal slides of two sizes (a batch of them needs padding)."""
    root = tmp_path_factory.mktemp("wsi")
    for i, (size, pos) in enumerate((((1200, 900), False), ((1200, 900), True), ((700, 1100), False))):
        ss.write_synthetic_slide(str(root / f"s{i}.tif"), size, positive=pos, seed=i, min_level_size=256,
                                 progress=False)  # fmt: skip
    return root


def _csv(path, text):
    path.write_text(text)
    return str(path)


def test_csv_header_optional_names_with_or_without_extension(folder, tmp_path):
    a = SlideFolder(folder, _csv(tmp_path / "a.csv", "slide,label\ns0,0\ns1,1\ns2.tif,0\n"))
    b = SlideFolder(folder, _csv(tmp_path / "b.csv", "s0,0\ns1,1\ns2,0\n"))
    assert a.labels == b.labels == [0, 1, 0] and a.classes == ["0", "1"]
    assert a.paths == b.paths == [os.path.join(folder, f"s{i}.tif") for i in range(3)]
    # CAMELYON16 style: names as labels, extra columns ignored; Normal < Tumor
    c = SlideFolder(folder, _csv(tmp_path / "c.csv", "s0,Normal,,\ns1,Tumor,Macro,\n"))
    assert c.classes == ["Normal", "Tumor"] and c.labels == [0, 1] and len(c) == 2


def test_item_is_source_lowres_label(folder, tmp_path):
    ds = SlideFolder(folder, _csv(tmp_path / "l.csv", "s0,0\ns2,1\n"), scale=1 / 16)
    src, low, label = ds[1]
    assert isinstance(src, zk.io.Source) and src.shape == (3, 700, 1100) and len(src.levels) >= 2
    assert low.shape == (3, 44, 69) and low.dtype == torch.uint8  # ceil(700 / 16), ceil(1100 / 16)
    assert label == 1
    # the low view agrees with the area mean of level 0
    full = src.read_patches(np.zeros((1, 2), np.int64), (700, 1100))[0].float()
    ref = torch.nn.functional.interpolate(full[None], size=low.shape[-2:], mode="area")[0]
    assert (ref - low.float()).abs().mean() < 4.0


def test_missing_slides_error_names_csv_and_slides(folder, tmp_path):
    bad = _csv(tmp_path / "bad.csv", "slide,label\ns0,0\nnope_1,1\ns1,1\nnope_2,0\n")
    with pytest.raises(FileNotFoundError) as e:
        SlideFolder(folder, bad)
    msg = str(e.value)
    assert bad in msg and "nope_1" in msg and "nope_2" in msg and "2 slide(s)" in msg and "s1" not in msg
    with pytest.raises(FileNotFoundError, match="labels CSV .*no such file"):
        SlideFolder(folder, tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="row 2 is not 'slide,label'"):
        SlideFolder(folder, _csv(tmp_path / "short.csv", "s0,0\ns1\n"))
    with pytest.raises(FileNotFoundError, match="no such directory"):
        SlideFolder(tmp_path / "nowhere", bad)


def test_tissue_mask_finds_the_tissue(folder):
    src = zk.io.open(folder / "s1.tif")
    low = src.lowres((300, 225))
    m = tissue_mask(low)
    # clear tissue (far from the glass colour) must be kept, clear glass left out; the soft halo between
    # may go either way
    diff = (low.permute(1, 2, 0).int() - torch.tensor(ss.BACKGROUND).int()).abs().amax(-1)
    tissue, glass = diff > 60, diff <= 2  # the lightest stroma is 71 away
    assert tissue.float().mean() > 0.05 and glass.float().mean() > 0.05
    assert m[tissue].float().mean() > 0.97, float(m[tissue].float().mean())
    assert m[glass].float().mean() < 0.05, float(m[glass].float().mean())


def test_tissue_mask_never_empty_and_grey():
    assert tissue_mask(torch.full((3, 20, 30), 240, dtype=torch.uint8)).all()
    g = torch.full((1, 40, 40), 230, dtype=torch.uint8)
    g[0, 10:20, 5:25] = 40  # a dark object on a bright grey view
    m = tissue_mask(g)
    assert m[12:18, 7:23].all() and not m[30:, 30:].any()
    with pytest.raises(ValueError, match="lowres must be"):
        tissue_mask(torch.zeros(20, 30))


def test_padded_batch_of_two_sizes(folder, tmp_path):
    ds = SlideFolder(folder, _csv(tmp_path / "p.csv", "s0,0\ns2,1\n"), scale=1 / 16)
    sources, low, y, mask = collate_slides([ds[0], ds[1]])
    assert [s.shape for s in sources] == [(3, 1200, 900), (3, 700, 1100)]
    assert low.shape == (2, 3, 75, 69) and mask.shape == (2, 75, 69) and y.tolist() == [0, 1]
    assert not mask[0, :, 57:].any() and not mask[1, 44:].any()  # padding is masked (ceil(900/16) = 57)
    assert (low[0, :, :, 57:] == 0).all() and mask[0].any() and mask[1].any()
    v, valid = pad_views([torch.ones(1, 2, 3), torch.ones(1, 4, 1)])
    assert v.shape == (2, 1, 4, 3) and valid.sum().tolist() == 10


def test_zoomin_stage1_never_leaves_the_mask():
    torch.manual_seed(0)
    m = zk.models.ZoomIn(2, 1, tile_size=20, s1=0.25, s2=0.5, patch_size=8, n_tiles=30, n_sub=2)
    image = torch.rand(3, 1, 100, 120)
    mask = torch.zeros(3, 25, 30, dtype=torch.bool)  # low-view resolution: 4 px per 20-px tile row
    mask[0, :8, :8] = True  # tiles (0..1, 0..1)
    mask[1, 20:, 24:] = True  # tiles (4, 4..5)
    mask[2] = True
    out = m(image, None, mask=mask)
    a = out["attention"]  # (3, 5, 6)
    assert a.shape == (3, 5, 6)
    assert (a[0, 2:] == 0).all() and (a[0, :, 2:] == 0).all() and a[0, :2, :2].sum() > 0.999
    assert (a[1, :4] == 0).all() and a[1, 4, 4:].sum() > 0.999 and (a[2] > 0).all()
    rows, cols = out["tile_indices"] // 6, out["tile_indices"] % 6
    assert (rows[0] < 2).all() and (cols[0] < 2).all() and (rows[1] == 4).all() and (cols[1] >= 4).all()
    with pytest.raises(ValueError, match="mask must be a .B, h, w. bool"):
        m(image, None, mask=mask.float())
    ats = zk.models.ATS(2, 1, s1=0.25, patch_size=8, n_patches=3)
    a2 = ats(image, None, mask=mask)["attention"]
    assert (a2[0, 8:] == 0).all() and a2[0, :8, :8].sum() > 0.999


def test_sources_of_different_sizes_share_a_padded_canvas():
    torch.manual_seed(1)
    big = zk.io.from_array(torch.randint(0, 255, (3, 160, 200), dtype=torch.uint8))
    small = zk.io.from_array(torch.randint(0, 255, (3, 80, 100), dtype=torch.uint8))
    m = zk.models.ZoomIn(2, 3, tile_size=40, s1=0.25, s2=0.5, patch_size=16, n_tiles=20, n_sub=2)
    out = m([big, small])  # no lowres: each low view at scale s1, padded to the canvas, padding masked
    a = out["attention"]
    assert a.shape == (2, 4, 5) and (a[0] > 0).all()
    assert (a[1, 2:] == 0).all() and (a[1, :, 3:] == 0).all() and a[1, :2, :3].sum() > 0.999
    assert (out["tile_offsets"][1, :, 0] < 80).all() and (out["tile_offsets"][1, :, 1] < 120).all()
    with pytest.raises(ValueError, match="share channels and dtype"):
        m([big, zk.io.from_array(torch.zeros(1, 80, 100, dtype=torch.uint8))])


def test_attention_net_pools_the_view_first():
    net = zk.models.AttentionNet(3, pool=4)
    assert net(torch.rand(2, 3, 37, 50)).shape == (2, 1, 10, 13)  # ceil(37 / 4), ceil(50 / 4)
    assert zk.models.AttentionNet(3)(torch.rand(1, 3, 37, 50)).shape == (1, 1, 37, 50)


@pytest.mark.parametrize("model", ["cnn_lowres", "cnn_full"])
def test_baselines_train_on_slides_of_two_sizes(folder, tmp_path, model):
    """Slides of different sizes pass a padding mask; the CNN baselines take it like the attention models
    (it was a TypeError: CNNLowRes.forward() got an unexpected keyword argument 'mask')."""
    from zoomkern.training import TrainConfig, train

    labels = _csv(tmp_path / "labels.csv", "s0,0\ns1,1\ns2,0\n")
    cfg = TrainConfig(dataset="slides", root=str(folder), labels=labels, model=model, n_classes=2,
                      scale=1 / 8, epochs=1, batch_size=3, plot_images=0,
                      out=str(tmp_path / "run"))  # fmt: skip
    assert train(cfg)["epochs_run"] == 1


def test_cnn_lowres_looks_only_inside_the_mask():
    from zoomkern.models import CNNLowRes

    torch.manual_seed(0)
    m = CNNLowRes(2, 3, s1=0.25).eval()
    img = torch.rand(2, 3, 64, 64)
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[:, :8] = True
    other = img.clone()
    other[..., 32:, :] = torch.rand(2, 3, 32, 64)  # change only what the mask hides
    with torch.no_grad():
        a, b = m(img, mask=mask)["logits"], m(other, mask=mask)["logits"]
        c = m(other)["logits"]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
