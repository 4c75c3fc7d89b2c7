"""The model review's defects (issue 12, item 4), each pinned by a test that failed before its fix:
spread top-k evaluation, one feature-net call for the contrastive branch, a one-tile contrastive grid,
an fp32 estimator under fp16 autocast, tiles inside the image, and one stage-II pass per distinct tile
(with the two-level estimate's value AND gradients checked by Monte Carlo)."""

import warnings

import pytest
import torch
import torch.nn.functional as F

import zoomkern as zk
from zoomkern.models import ATS, FeatureNet, ZoomIn, base


def _blobs(H=96, W=96):
    """One large bright square (many cells of one peak) and four small ones, far apart."""
    img = torch.zeros(1, 1, H, W, dtype=torch.uint8)
    img[..., 4:24, 4:24] = 255  # the big peak: 20 x 20, several cells, less than 2 patches
    for y, x in ((70, 10), (10, 70), (70, 70), (45, 50)):
        img[..., y : y + 6, x : x + 6] = 200
    return img


def _covered(offsets, boxes, size):
    """How many boxes (y, x, h, w) at least one patch overlaps."""
    n = 0
    for by, bx, bh, bw in boxes:
        hit = [(y < by + bh and by < y + size and x < bx + bw and bx < x + size) for y, x in offsets]
        n += any(hit)
    return n


def test_ats_topk_keeps_cells_of_different_peaks():
    # Attention = the ink prior (the attention net starts at zero). Plain top-5 keeps 5 adjacent cells of
    # the big square; spread top-k must reach the 4 small squares too.
    m = ATS(10, 1, patch_size=12, n_patches=5, prior=True, eval_topk=True, feature_net=FeatureNet(1, (4,), 4))
    img = _blobs()
    out = m.eval()(img, None)
    offs = out["patch_offsets"][0].tolist()
    boxes = [(4, 4, 20, 20), (70, 10, 6, 6), (10, 70, 6, 6), (70, 70, 6, 6), (45, 50, 6, 6)]
    assert _covered(offs, boxes, 12) == 5, offs
    # no two kept patches overlap
    for i, (y, x) in enumerate(offs):
        for yy, xx in offs[i + 1 :]:
            assert abs(y - yy) >= 12 or abs(x - xx) >= 12, offs


def test_topk_spread_unit():
    p = torch.tensor([[0.30, 0.25, 0.0, 0.05], [0.20, 0.0, 0.0, 0.20]]).reshape(1, 2, 4) + 0.0
    p = p / p.sum()
    idx, probs = base.draw(p, 3, False, True, spacing=(2, 2))
    # cell 0 first (1, 4, 5 lie within 2 cells of it), then 7, the best cell left; 7 suppresses 2, 3, 6:
    # nothing is left apart from the kept cells, so the best suppressed cell, 1, comes third
    assert idx.tolist() == [[0, 7, 1]]
    torch.testing.assert_close(probs, p.flatten(1)[:, [0, 7, 1]])
    # more cells asked than fit apart: the suppressed ones follow, by probability, never a repeat
    idx, _ = base.draw(p, 8, False, True, spacing=(2, 2))
    assert sorted(idx[0].tolist()) == list(range(8)) and idx[0, :3].tolist() == [0, 7, 1]


def test_zoomin_topk_sub_cells_spread():
    m = ZoomIn(10, 1, tile_size=48, s2=0.5, sub_grid=8, patch_size=12, n_tiles=1, n_sub=2, prior=True,
               eval_topk=True, feature_net=FeatureNet(1, (4,), 4))  # fmt: skip
    img = _blobs()
    out = m.eval()(img, None)
    offs = out["patch_offsets"][0].tolist()  # tile 0 holds the big square: 2 cells, 6 px apart before
    assert abs(offs[0][0] - offs[1][0]) >= 12 or abs(offs[0][1] - offs[1][1]) >= 12, offs


class _Count(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls, self.out_dim = net, 0, net.out_dim

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def _zoomin(n_classes=2, **kw):
    args = dict(tile_size=32, s2=0.5, sub_grid=4, patch_size=12, n_tiles=3, n_sub=2, prior=True)
    args.update(kw)
    args.setdefault("feature_net", FeatureNet(1, widths=(4, 8), out_dim=8, norm="batch"))
    return ZoomIn(n_classes, 1, **args)


def _img(B, H=96, W=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, 1, H, W, generator=g) ** 4 * 255).to(torch.uint8)


def test_contrastive_uses_one_feature_net_call():
    torch.manual_seed(0)
    fnet = _Count(FeatureNet(1, widths=(4, 8), out_dim=8, norm="batch"))
    m = _zoomin(contrastive=True, feature_net=fnet).train()
    bn = next(x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d))
    m(_img(4), None, labels=torch.tensor([0, 1, 1, 0]))
    assert fnet.calls == 1  # both branches in one batch: one set of batch statistics
    assert int(bn.num_batches_tracked) == 1  # running statistics updated once per step


def test_contrastive_on_a_one_tile_grid():
    torch.manual_seed(0)
    m = _zoomin(contrastive=True, tile_size=96).train()  # 96 x 96 image: a 1 x 1 tile grid
    out = m(_img(4), None, labels=torch.tensor([0, 1, 1, 0]))
    assert torch.isfinite(out["aux_loss"]) and out["aux_loss"] > 0  # stage II still inverts
    out["aux_loss"].backward()
    # both levels single-cell: the inverted draw would be the positive one; the term is skipped, loudly
    m = _zoomin(contrastive=True, tile_size=96, sub_grid=1, n_sub=1, s2=1.0).train()
    with pytest.warns(UserWarning, match="contrastive term skipped"):
        out = m(_img(2), None, labels=torch.tensor([1, 1]))
    assert float(out["aux_loss"].detach()) == 0.0


def test_estimator_runs_in_fp32_under_fp16():
    # A probability of 1e-6 is a float16 subnormal: cast to the feature dtype it loses precision (and
    # the reference clamps it to float16's smallest normal, 6.1e-5), so its gradient came out ~61x small.
    f = torch.randn(2, 3, 4)
    p = torch.tensor([[1e-6, 0.3, 0.2], [0.5, 2e-6, 0.1]], requires_grad=True)
    ref_p = p.detach().clone().requires_grad_(True)
    base.aggregate(f.half(), p, True, False).float().sum().backward()
    zk.expectation(f.half().float(), ref_p, replace=True).sum().backward()
    torch.testing.assert_close(p.grad, ref_p.grad, rtol=1e-5, atol=0)
    # the whole model under CPU fp16 autocast: the estimator's output is float32
    m = _zoomin(10, feature_net=FeatureNet(1, widths=(4, 8), out_dim=8))
    with torch.autocast("cpu", dtype=torch.float16):
        out = m(_img(2), None)
    assert torch.isfinite(out["logits"]).all()


def test_tiles_stay_inside_the_image():
    # H = 100, T = 64: a 2 x 2 ceil grid; tiles centred on its cells started at -7 and ended at 107
    torch.manual_seed(0)
    m = _zoomin(10, tile_size=64, n_tiles=6, sub_grid=4, s2=0.5)
    out = m(_img(2, 100, 100), None)
    t = out["tile_offsets"]
    assert (t >= 0).all() and (t <= 100 - 64).all(), t
    # patches follow their tile: corners within the tile, up to half a patch outside
    rel = out["patch_offsets"].view(2, 6, 2, 2) - t[:, :, None]
    assert (rel >= -6).all() and (rel <= 64).all()


def test_non_integer_stage2_pooling_is_refused():
    with pytest.raises(ValueError, match="1/s2"):
        _zoomin(s2=0.3)
    _zoomin(s2=1 / 3, tile_size=33)  # 1/s2 = 3 up to rounding: accepted


def test_duplicate_tile_draws_share_one_stage2_pass():
    # A sharp stage-I map (one bright tile): most of the 6 draws land on the same tile. It is read once,
    # scored once, and its 6 x 2 sub-cells are drawn together without replacement: all distinct.
    torch.manual_seed(0)
    img = torch.zeros(8, 1, 96, 96, dtype=torch.uint8)
    img[:, :, 32:64, 32:64] = (torch.rand(8, 1, 32, 32) * 255).to(torch.uint8)
    seen = []
    m = _zoomin(10, n_tiles=6, sub_grid=4, n_sub=2, feature_net=FeatureNet(1, (4,), 4))
    m.attention2.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    out = m(img, None)
    n_distinct = sum(len(set(r)) for r in out["tile_indices"].tolist())
    assert seen == [n_distinct] and n_distinct < 8 * 6
    for b in range(8):
        per_tile = {}
        for t, subs in zip(out["tile_indices"][b].tolist(), out["sub_indices"][b].tolist(), strict=True):
            per_tile.setdefault(t, []).extend(subs)
        for subs in per_tile.values():
            assert len(set(subs)) == len(subs), per_tile
    # 9 draws x 2 sub-cells on one tile would need 18 of its 16 cells: capped, the extra slots say so
    torch.manual_seed(0)
    m = _zoomin(10, n_tiles=9, sub_grid=4, n_sub=2, feature_net=FeatureNet(1, (4,), 4))
    out = m(img, None)
    full = (out["tile_indices"] == 4).all(1)  # images whose 9 draws all hit the bright tile
    assert full.any() and (out["patch_valid"][full].sum(1) == 16).all()
    assert (out["sub_indices"][full] >= 0).flatten(1).sum(1).eq(16).all()
    out["logits"].sum().backward()


class _Mean(torch.nn.Module):
    out_dim = 1

    def forward(self, x):
        return x.mean((1, 2, 3))[:, None]


class _ScaledView(torch.nn.Module):
    """logits = w * mean over channels: one scalar parameter, so the exact gradient is easy to get."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(float(w)))

    def forward(self, x):
        return self.w * 8.0 * x.mean(1, keepdim=True)


def _mc_model(n_tiles, n_sub):
    torch.manual_seed(0)
    return ZoomIn(1, 1, tile_size=32, s2=0.5, sub_grid=4, patch_size=12, n_tiles=n_tiles, n_sub=n_sub,
                  prior=True, prior_weight=0.5, attention1=_ScaledView(1.0), attention2=_ScaledView(0.5),
                  feature_net=_Mean(), head=torch.nn.Identity())  # fmt: skip


def _mc_image():
    img = torch.full((1, 1, 96, 96), 3, dtype=torch.uint8)
    img[..., 5:30, 5:30], img[..., 40:50, 60:90], img[..., 70:90, 10:20] = 200, 120, 255
    img[..., 0:8, 88:96] = 90
    return img


def _exact(m, img):
    """sum_t a_t sum_p b_tp f(p) over every tile and sub-cell, differentiable in both attention nets."""
    a, _, grid = m.stage1(img, None)
    nt, ns = grid[0] * grid[1], m.sub_grid[0] * m.sub_grid[1]
    t_off = m.tile_offsets(torch.arange(nt)[None], grid, *img.shape[-2:])
    tiles = base.gather(img, t_off, m.tile_size, "cpu").flatten(0, 1)
    view = F.avg_pool2d(tiles, m.pool2)
    b, _ = m._softmax(base.pool_logits(m.attention2(view), m.sub_grid), view, m.sub_grid)
    s_off = zk.cells_to_offsets(
        torch.arange(ns).expand(nt, ns).contiguous(), m.sub_grid, m.tile_size, (12, 12)
    )
    p_off = (t_off.reshape(nt, 1, 2) + s_off).reshape(1, nt * ns, 2)
    f = base.gather(img, p_off, (12, 12), "cpu").mean((2, 3, 4)).view(nt, ns)
    return (a.view(nt) * (b.view(nt, ns) * f).sum(1)).sum()


def _mc_batches(m, img, R, n):
    """R batches of n copies of img: each batch's mean logit and its gradients on both attention nets."""
    vals, grads = [], []
    for _ in range(R):
        v = m(img.expand(n, -1, -1, -1), None)["logits"][:, 0].mean()
        g = torch.autograd.grad(v, [m.attention1.w, m.attention2.w])
        vals.append(float(v.detach()))
        grads.append(torch.stack(g))
    return torch.tensor(vals), torch.stack(grads)


@pytest.mark.parametrize("n_tiles,n_sub", [(2, 2), (6, 3)])  # (6, 3): 6 x 3 > 16 cells, the cap bites
def test_two_level_estimate_value_and_gradients_are_unbiased(n_tiles, n_sub):
    """Monte Carlo: R batches of n copies; each batch gives the mean value and the mean gradient of the
    two attention parameters. Their means over batches must lie within 4.5 standard errors (from the
    spread of the R batch means) of the exhaustive value and its autograd gradient. The exact gradients
    are 10+ standard errors from zero, so a dropped or wrongly scaled gradient term fails the test."""
    m = _mc_model(n_tiles, n_sub)
    img = _mc_image()
    ex = _exact(m, img)
    g_exact = torch.autograd.grad(ex, [m.attention1.w, m.attention2.w])
    R, n = 16, 200
    vals, grads = _mc_batches(m, img, R, n)
    se_v = vals.std() / R**0.5
    assert abs(vals.mean() - ex) < 4.5 * se_v + 1e-5, (float(vals.mean()), float(ex), float(se_v))
    se_g = grads.std(0) / R**0.5
    for i, name in enumerate(("stage I", "stage II")):
        est, exact = float(grads[:, i].mean()), float(g_exact[i])
        assert abs(exact) > 10 * float(se_g[i]), f"{name}: the test cannot tell a zero gradient apart"
        assert abs(est - exact) < 4.5 * float(se_g[i]) + 1e-6, (name, est, exact, float(se_g[i]))


def test_no_warning_for_ordinary_use():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = _zoomin(contrastive=True).train()
        m(_img(4), None, labels=torch.tensor([0, 1, 1, 0]))
