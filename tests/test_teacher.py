"""The attention teacher (zoomkern/models/teacher.py): its targets against a per-image reference, where
its gradient goes, that evaluation never runs it, and that it makes attention learn from scratch."""

import pytest
import torch
import torch.nn.functional as F

import zoomkern as zk
from zoomkern.models import FeatureNet, ZoomIn
from zoomkern.training import TrainConfig
from zoomkern.training.config import build_model


def _model(**kw):
    torch.manual_seed(0)
    opts = dict(tile_size=16, s2=0.5, sub_grid=(2, 2), patch_size=6, n_tiles=3, n_sub=1, teacher=1.0,
                teacher_sub=4, teacher_top=2, teacher_frac=0.6)  # fmt: skip
    opts.update(kw)
    m = ZoomIn(3, 1, feature_net=FeatureNet(1, (4, 8), 8, norm="batch"), **opts)
    for net in (m.attention1, m.attention2):  # the last layers start at zero: give the maps a shape
        torch.nn.init.normal_(net.net[-1].weight, std=0.5)
    return m.train()


def _batch(B=3, H=45, W=40):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (B, 1, H, W), generator=g, dtype=torch.uint8), torch.tensor([0, 2, 1])[:B]


def _reference(m, img, y, rows):
    """The teacher's loss, one image and one tile at a time, every sub-cell of every tile tried."""
    T, P, S = m.tile_size, m.patch_size, m.sub_grid
    H, W = img.shape[-2:]
    grid = m.tile_grid(H, W)
    total1, total2 = 0.0, 0.0
    for i in range(rows):
        a = m.stage1(img[i : i + 1], None)[0].flatten()
        scores, maps, bests = [], [], []
        for t in range(grid[0] * grid[1]):
            ty, tx = m.tile_offsets(torch.tensor([[t]]), grid, H, W)[0, 0].tolist()
            tile = img[i : i + 1, :, ty : ty + T[0], tx : tx + T[1]].float() / 255
            view = F.avg_pool2d(tile, m.pool2)
            logits = F.adaptive_max_pool2d(m.attention2(view), S).flatten()
            b = (1 - m.smoothing) * torch.softmax(logits, 0) + m.smoothing / logits.numel()
            m.feature_net.eval()
            with torch.no_grad():
                cells = []
                for c in range(S[0] * S[1]):
                    py, px = zk.cells_to_offsets(torch.tensor([[c]]), S, T, P)[0, 0].tolist()
                    padded = F.pad(tile, (0, P[1], 0, P[0]))  # patches may hang over the image's edge
                    patch = padded[..., py : py + P[0], px : px + P[1]]
                    cells.append(float(F.log_softmax(m.head(m.feature_net(patch)), -1)[0, y[i]]))
            m.feature_net.train()
            c_best = max(range(len(cells)), key=cells.__getitem__)
            scores.append(cells[c_best])
            maps.append(b)
            bests.append(c_best)
        top = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:2]
        total1 = total1 - torch.log(a[top]).mean()
        total2 = total2 - torch.stack([torch.log(maps[t][bests[t]]) for t in top]).mean()
    return (total1 + total2) / rows


def test_teacher_matches_a_per_image_reference_value_and_gradients():
    m = _model()
    img, y = _batch()
    out = m(img, labels=y)
    got = out["teacher_loss1"] + out["teacher_loss2"]
    params = list(m.attention1.parameters()) + list(m.attention2.parameters())
    # aux_loss = teacher only (no entropy, no contrastive term): compare its gradient too
    g_got = torch.autograd.grad(out["aux_loss"], params)
    ref = _reference(m, img, y, rows=2)  # ceil(0.6 * 3) = 2 images
    torch.testing.assert_close(got, ref.detach(), rtol=1e-5, atol=1e-5)
    g_ref = torch.autograd.grad(ref, params)
    for a, b in zip(g_got, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert out["teacher_cells"].shape == (2, 2)


def test_teacher_gradient_reaches_only_the_attention_nets_and_keeps_batchnorm_statistics():
    m = _model()
    img, y = _batch()
    torch.manual_seed(3)
    m.teacher = 0.0
    m(img, labels=y)
    stats_off = [b.clone() for b in m.feature_net.buffers()]
    m = _model()
    torch.manual_seed(3)
    out = m(img, labels=y)
    for a, b in zip(stats_off, m.feature_net.buffers(), strict=True):  # the teacher ran in eval mode
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert m.feature_net.training
    out["aux_loss"].backward()
    for name, p in m.named_parameters():
        if name.startswith(("feature_net", "head")):
            assert p.grad is None, name
    assert all(p.grad is not None for p in m.attention1.parameters())
    assert all(p.grad is not None for p in m.attention2.parameters())


def test_teacher_never_runs_at_evaluation_or_without_labels(monkeypatch):
    import zoomkern.models.zoomin as zoomin

    m = _model()
    img, y = _batch()

    def boom(*a, **k):
        raise AssertionError("teacher ran")

    monkeypatch.setattr(zoomin, "teacher_loss", boom)
    m.eval()(img, labels=y)  # evaluation
    with torch.no_grad():
        m.train()(img, labels=y)  # inference in training mode
    m.train()(img)  # no labels: nothing to teach with
    with pytest.raises(AssertionError, match="teacher ran"):
        m(img, labels=y)


def test_teacher_options_and_bad_values():
    cfg = TrainConfig(teacher=0.5, teacher_top=3, tile_size=32, s2=0.5, patch_size=12)
    m = build_model(cfg)
    assert m.teacher == 0.5 and m.options.teacher_top == 3
    for bad in (dict(teacher=-1), dict(teacher_frac=0), dict(teacher_top=0), dict(teacher_tiles=0)):
        with pytest.raises(ValueError, match="teacher"):
            ZoomIn(10, 1, tile_size=16, s2=0.5, patch_size=6, **bad)


def test_teacher_with_fewer_tiles_than_the_grid_and_a_mask():
    m = _model(teacher_tiles=3, teacher_frac=1.0)
    img, y = _batch()
    mask = torch.zeros(3, 9, 8, dtype=torch.bool)
    mask[:, :5, :4] = True  # the top-left tiles only
    out = m(img, labels=y, mask=mask)
    allowed = {0, 1, 3, 4}  # cells of the 3 x 3 tile grid touched by the mask
    assert set(out["teacher_cells"].flatten().tolist()) <= allowed


def _bars(n, g, H=64):
    """A 2 x 8 bar (horizontal: class 0, vertical: class 1) among six 3 x 3 dots of the same ink."""
    img = torch.zeros(n, 1, H, H)
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(0, H - 8, (n, 2), generator=g)
    for i in range(n):
        for _ in range(6):
            dy, dx = torch.randint(0, H - 3, (2,), generator=g).tolist()
            img[i, 0, dy : dy + 3, dx : dx + 3] = 1.0
        py, px = pos[i].tolist()
        if y[i] == 0:
            img[i, 0, py + 3 : py + 5, px : px + 8] = 1.0
        else:
            img[i, 0, py : py + 8, px + 3 : px + 5] = 1.0
    return (img * 255).to(torch.uint8), y, pos


def _learn(teacher: float, steps: int = 100, seed: int = 1):
    """Train from scratch (no prior: uniform attention at the start) -> (stage-I mass on the bar's tile,
    test accuracy) on 200 held-out canvases."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    m = ZoomIn(2, 1, tile_size=16, s1=0.25, s2=0.5, sub_grid=(2, 2), patch_size=8, n_tiles=4, n_sub=1,
               teacher=teacher, teacher_sub=4, teacher_top=1, teacher_frac=1.0,
               feature_net=FeatureNet(1, (8, 16), 16, norm="batch"))  # fmt: skip
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(steps):
        img, y, _ = _bars(16, g)
        out = m.train()(img, labels=y)
        loss = F.cross_entropy(out["logits"], y) + out["aux_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    img, y, pos = _bars(200, torch.Generator().manual_seed(99))
    with torch.no_grad():
        a = m.eval().stage1(img, None)[0].flatten(1)
        cell = (pos[:, 0] + 4) // 16 * 4 + (pos[:, 1] + 4) // 16  # the tile holding the bar's centre
        acc = (m(img)["logits"].argmax(1) == y).float().mean()
        return float(a.gather(1, cell[:, None]).mean()), float(acc)


def test_attention_learns_from_scratch_with_the_teacher_and_not_without():
    """16 tiles, 4 patches of 8 x 8 drawn a step, 100 steps of 16 canvases (a few seconds). Measured over
    seeds 0-2: with the teacher 0.63-0.66 of stage I's mass on the bar's tile and 92-97% accuracy;
    without it (the score-function gradient alone) 0.06-0.12, the uniform 1/16, and chance."""
    mass, acc = _learn(1.0)
    assert mass > 0.3 and acc > 0.8, (mass, acc)
    mass0, acc0 = _learn(0.0)
    assert mass0 < 0.15 and acc0 < 0.7, (mass0, acc0)


def test_teacher_of_a_preset_with_another_model_warns_and_builds():
    with pytest.warns(UserWarning, match="teacher is Zoom-In's"):
        m = build_model(TrainConfig(model="ats", teacher=1.0, patch_size=12))
    assert type(m).__name__ == "ATS"
