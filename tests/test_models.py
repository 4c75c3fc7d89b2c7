"""Models: forward/backward on tiny images on every CPU backend, reference vs default losses, the
two-level estimate's mean, deterministic evaluation, contrastive term, and bad-input errors."""

import pytest
import torch
import torch.nn.functional as F

from zoomkern.models import ATS, CNNFull, CNNLowRes, FeatureNet, ZoomIn

H = W = 96


def _batch(B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = (torch.rand(B, 1, H, W, generator=g) ** 4 * 255).to(torch.uint8)
    low = F.interpolate(img.float(), size=(12, 12), mode="area").to(torch.uint8)
    return img, low, torch.arange(B) % 10


def _zoomin(n_classes=10, **kw):
    args = dict(
        tile_size=32,
        s2=0.5,
        sub_grid=4,
        patch_size=12,
        n_tiles=3,
        n_sub=2,
        prior=True,
        feature_net=FeatureNet(1, widths=(4, 8), out_dim=8),
        entropy1=0.01,
        entropy2=0.01,
    )
    args.update(kw)
    return ZoomIn(n_classes, 1, **args)


def _ats(**kw):
    return ATS(
        10,
        1,
        patch_size=12,
        n_patches=4,
        prior=True,
        feature_net=FeatureNet(1, widths=(4, 8), out_dim=8),
        entropy=0.01,
        **kw,
    )


MODELS = {
    "zoomin": _zoomin,
    "ats": _ats,
    "cnn_lowres": lambda: CNNLowRes(10),
    "cnn_full": lambda: CNNFull(10),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_backward(name, each_backend):
    torch.manual_seed(0)
    model = MODELS[name]()
    img, low, y = _batch()
    out = model(img, low)
    assert out["logits"].shape == (3, 10) and out["aux_loss"].dim() == 0
    (F.cross_entropy(out["logits"], y) + out["aux_loss"]).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing}"


def test_zoomin_outputs_describe_the_draws():
    torch.manual_seed(0)
    m = _zoomin()
    img, low, _ = _batch()
    out = m(img, low)
    assert out["attention"].shape == (3, 3, 3)  # ceil(96 / 32)
    assert out["tile_indices"].shape == (3, 3) and out["sub_indices"].shape == (3, 3, 2)
    assert out["sub_attention"].shape == (3, 3, 4, 4) and out["patch_offsets"].shape == (3, 6, 2)
    torch.testing.assert_close(out["attention"].sum((1, 2)), torch.ones(3))
    # Sub-cells are distinct within each draw (without replacement).
    s = out["sub_indices"]
    assert (s[..., 0] != s[..., 1]).all()
    # Patches lie around their tiles: top-left corner within the tile, up to half a patch outside.
    rel = out["patch_offsets"].view(3, 3, 2, 2) - out["tile_offsets"][:, :, None]
    assert (rel >= -6).all() and (rel <= 32).all()


def test_two_level_estimate_is_unbiased():
    # With a feature net f(patch) = mean pixel and identity head, the model's value is the two-level
    # estimate; its Monte Carlo mean must approach sum_t a_t sum_p b_tp f(p), computed exhaustively.
    class Mean(torch.nn.Module):
        out_dim = 1

        def forward(self, x):
            return x.mean((1, 2, 3))[:, None]

    torch.manual_seed(0)
    m = ZoomIn(
        1,
        1,
        tile_size=32,
        s2=0.5,
        sub_grid=4,
        patch_size=12,
        n_tiles=2,
        n_sub=2,
        prior=True,
        feature_net=Mean(),
        head=torch.nn.Identity(),
    )
    # Blocks of different brightness: the ink prior makes both maps far from uniform and f varies
    # between cells, so a biased weighting (e.g. plug-in attention weights) would show.
    img = torch.full((1, 1, H, W), 3, dtype=torch.uint8)
    img[..., 5:30, 5:30], img[..., 40:50, 60:90], img[..., 70:90, 10:20] = 200, 120, 255
    low = F.interpolate(img.float(), size=(12, 12), mode="area").to(torch.uint8)
    with torch.no_grad():
        # One batch of copies: every row draws its own tiles and sub-cells.
        vals = torch.cat(
            [m(img.expand(1000, -1, -1, -1), low.expand(1000, -1, -1, -1))["logits"][:, 0] for _ in range(4)]
        )
        a, _, grid = m.stage1(img, low)
        # exact: every tile, every sub-cell
        nt = grid[0] * grid[1]
        import zoomkern as zk
        from zoomkern.models import base

        t_off = zk.cells_to_offsets(torch.arange(nt)[None], grid, (H, W), m.tile_size)
        tiles = base.gather(img, t_off, m.tile_size, "cpu").flatten(0, 1)
        view = F.avg_pool2d(tiles, m.pool2)
        b, _ = m._softmax(base.pool_logits(m.attention2(view), m.sub_grid), view, m.sub_grid)
        ns = m.sub_grid[0] * m.sub_grid[1]
        s_off = zk.cells_to_offsets(
            torch.arange(ns).expand(nt, ns).contiguous(), m.sub_grid, m.tile_size, (12, 12)
        )
        p_off = (t_off.reshape(nt, 1, 2) + s_off).reshape(1, nt * ns, 2)
        f = base.gather(img, p_off, (12, 12), "cpu").mean((2, 3, 4)).view(nt, ns)
        exact = (a.view(nt) * (b.view(nt, ns) * f).sum(1)).sum()
    se = vals.std() / len(vals) ** 0.5
    assert abs(vals.mean() - exact) < 4 * se + 1e-4, (float(vals.mean()), float(exact), float(se))


def test_eval_topk_is_deterministic():
    m = _zoomin(eval_topk=True).eval()
    img, low, _ = _batch()
    torch.manual_seed(1)
    a = m(img, low)["logits"]
    torch.manual_seed(2)
    torch.testing.assert_close(a, m(img, low)["logits"], rtol=0, atol=0)


def test_contrastive_term():
    torch.manual_seed(0)
    m = _zoomin(2, contrastive=True)
    img, low, _ = _batch(B=4)
    labels = torch.tensor([0, 1, 1, 0])
    with_c = m(img, low, labels=labels)["aux_loss"]
    torch.manual_seed(0)
    without = m(img, low)["aux_loss"]
    assert with_c > without  # a cross-entropy term was added
    with pytest.raises(ValueError, match="binary"):
        _zoomin(10, contrastive=True)


def test_reference_and_default_backends_train_alike(monkeypatch):
    """A few optimiser steps from the same start: the losses agree within float32 round-off growth."""

    def run(backend):
        if backend:
            monkeypatch.setenv("ZOOMKERN_BACKEND", backend)
        else:
            monkeypatch.delenv("ZOOMKERN_BACKEND", raising=False)
        torch.manual_seed(0)
        m = _zoomin()
        opt = torch.optim.Adam(m.parameters(), 1e-2)
        img, low, y = _batch(B=4)
        losses = []
        for _ in range(4):
            out = m(img, low)
            loss = F.cross_entropy(out["logits"], y) + out["aux_loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        return losses

    ref, default = run("reference"), run(None)
    assert ref == pytest.approx(default, rel=1e-3, abs=1e-4)


def test_bad_inputs():
    img, low, _ = _batch()
    with pytest.raises(ValueError, match="smaller than the patch"):
        _zoomin(patch_size=128)(img, low)
    with pytest.raises(ValueError, match="smaller than the patch"):
        _ats()(img[..., :8, :8], None)
    with pytest.raises(ValueError, match="more than"):
        _zoomin(n_sub=17)
    with pytest.raises(ValueError, match="more than"):
        ATS(10, 1, patch_size=12, n_patches=200)(img, low)  # 12 x 12 = 144 cells
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        _zoomin()(img[0], low)
    with pytest.raises(ValueError, match="lowres"):
        _zoomin()(img, low[:2])


def test_feature_net_norms():
    img, low, y = _batch(B=4)
    for norm in ("batch", "none"):
        m = _zoomin(feature_net=FeatureNet(1, widths=(4, 8), out_dim=8, norm=norm), eval_topk=True)
        out = m(img, low)
        (F.cross_entropy(out["logits"], y) + out["aux_loss"]).backward()
        assert torch.isfinite(m.eval()(img, low)["logits"]).all()
    with pytest.raises(ValueError, match="norm"):
        FeatureNet(1, norm="layer")


def test_timm_backbone_as_feature_net():
    from zoomkern.models import timm_feature_net

    fnet = timm_feature_net("test_efficientnet", 1)
    m = _zoomin(feature_net=fnet)
    img, low, y = _batch()
    out = m(img, low)
    assert out["logits"].shape == (3, 10) and m.head.in_features == fnet.out_dim
    F.cross_entropy(out["logits"], y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fnet.parameters() if p.dim() > 1)


def test_attention_padding_does_not_fire_on_borders():
    # A constant view has no edges: with replicate padding the map is constant; zero padding invents an
    # edge at the border (the stage-II maps lined every tile's inner border in the demo, issue 12).
    from zoomkern.models import AttentionNet

    x = torch.full((1, 1, 12, 12), 0.7)
    for mode, flat in (("replicate", True), ("zeros", False)):
        torch.manual_seed(0)
        net = AttentionNet(1, padding_mode=mode)
        torch.nn.init.normal_(net.net[-1].weight)  # the last layer starts at zero: give it weights
        y = net(x)
        assert bool(torch.allclose(y, y[0, 0, 6, 6], atol=1e-6)) == flat, mode
    with pytest.raises(ValueError, match="padding_mode"):
        AttentionNet(1, padding_mode="circularish")
