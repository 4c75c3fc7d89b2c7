"""Issue 12: why stage I did not learn, and the options measured against it (docs/experiments/stage1.md).

The leave-one-out tile baseline keeps the value and the expectation of the gradient (Monte Carlo against
the exhaustive sum) and lowers the spread of stage I's gradient; the prior's weight schedule is a
function of the epoch; bad values are errors naming the flag."""

import os
import sys

import pytest
import torch
from test_model_defects import _exact, _mc_batches, _mc_image, _mc_model

from zoomkern.models import AttentionNet, ZoomIn, base
from zoomkern.training import TrainConfig
from zoomkern.training.config import build_model, prior_weight_at

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))


class _Offset(torch.nn.Module):
    """f = mean of the patch + 2: the common offset every ReLU feature net has; it moves neither the
    exact gradient nor (in expectation) the estimate, only the spread of the plain estimator."""

    out_dim = 1

    def forward(self, x):
        return x.mean((1, 2, 3))[:, None] + 2.0


def test_tile_baseline_keeps_value_and_expectation_and_lowers_the_spread():
    """Same draws (same seed), baseline off and on: identical values; with it the stage-I gradient stays
    within 4.5 standard errors of the exact one and its spread over batches drops (the features share a
    large common offset here, which the plain score-function term multiplies into every draw)."""
    img = _mc_image()
    R, n = 16, 100
    out = {}
    for on in (False, True):
        m = _mc_model(3, 2)
        m.feature_net, m.tile_baseline = _Offset(), on
        torch.manual_seed(1)
        out[on] = _mc_batches(m, img, R, n)
    torch.testing.assert_close(out[True][0], out[False][0], rtol=0, atol=0)  # forward value unchanged
    m = _mc_model(3, 2)
    g1_exact = float(torch.autograd.grad(_exact(m, img), [m.attention1.w])[0])
    sd_off, sd_on = float(out[False][1][:, 0].std()), float(out[True][1][:, 0].std())
    se = sd_on / R**0.5
    assert abs(g1_exact) > 10 * se
    assert abs(float(out[True][1][:, 0].mean()) - g1_exact) < 4.5 * se + 1e-6
    assert sd_on < 0.7 * sd_off, (sd_on, sd_off)
    # stage II untouched: the same gradients with and without
    torch.testing.assert_close(out[True][1][:, 1], out[False][1][:, 1])


def test_loo_baseline_is_zero_and_single_draw_is_a_no_op():
    f = torch.randn(3, 4, 5)
    p = torch.rand(3, 4).add(0.1).requires_grad_()
    z = base.loo_baseline(f, p)
    assert z.shape == (3, 5) and bool((z == 0).all())
    (g,) = torch.autograd.grad((z * torch.ones(5)).sum(), p)
    # -<g, b_m> / (N p_m) with g = ones, b_m = mean of the other draws
    b = (f.sum(1, keepdim=True) - f) / 3
    torch.testing.assert_close(g, -b.sum(-1) / (4 * p.detach()))
    assert bool((base.loo_baseline(f[:, :1], p[:, :1]) == 0).all())


def test_tile_baseline_off_at_evaluation_and_in_the_model_options():
    m = ZoomIn(10, 1, tile_size=32, s2=0.5, sub_grid=4, patch_size=12, n_tiles=3, tile_baseline=True)
    assert m.tile_baseline and m.options.tile_baseline
    m.eval()
    with torch.no_grad():
        m(torch.zeros(2, 1, 64, 64, dtype=torch.uint8), None)
    cfg = TrainConfig(tile_baseline=True, tile_size=32, s2=0.5, patch_size=12)
    assert build_model(cfg).tile_baseline


def test_prior_weight_schedule():
    cfg = TrainConfig(epochs=5, prior_weight=1.0, prior_weight_final=0.2)
    assert [round(prior_weight_at(cfg, e), 6) for e in range(5)] == [1.0, 0.8, 0.6, 0.4, 0.2]
    assert prior_weight_at(TrainConfig(epochs=5, prior_weight=0.5), 3) == 0.5
    assert build_model(TrainConfig(prior_weight=0.5, tile_size=32, s2=0.5, patch_size=12)).prior_weight == 0.5


@pytest.mark.parametrize(
    "kw,flag",
    [
        (dict(prior_weight=-1.0), "prior_weight"),
        (dict(prior_weight_final=float("nan")), "prior_weight_final"),
        (dict(tile_baseline=True, model="ats"), "tile_baseline"),
        (dict(attention1_lr_mult=float("inf")), "attention1_lr_mult"),
        (dict(attention_lr_mult=-2.0), "attention_lr_mult"),
        (dict(attention_activation="gelu"), "attention_activation"),
    ],
)
def test_bad_values_name_the_flag(kw, flag):
    with pytest.raises(ValueError, match=flag):
        TrainConfig(**kw)


def test_leaky_attention_nets():
    m = build_model(TrainConfig(tile_size=32, s2=0.5, patch_size=12, attention_activation="leaky_relu"))
    for net in (m.attention1, m.attention2):
        acts = [x for x in net.modules() if isinstance(x, (torch.nn.ReLU, torch.nn.LeakyReLU))]
        assert acts and all(isinstance(x, torch.nn.LeakyReLU) for x in acts)
    # a unit with all-negative input still passes a gradient (a ReLU one would not)
    net = AttentionNet(1, activation="leaky_relu")
    with torch.no_grad():
        net.net[0].bias.fill_(-10.0)
        net.net[-1].weight.fill_(0.1)
    net(torch.rand(1, 1, 8, 8)).sum().backward()
    assert float(net.net[0].weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="activation"):
        AttentionNet(1, activation="tanh")


class _BackgroundHigh(torch.nn.Module):
    """Scores every pixel w * (1 - 2 * ink): the empty background is the maximum of every cell."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.w * (1.0 - 2.0 * x.mean(1, keepdim=True))


def test_lse_tile_pooling_leaves_the_background_trap():
    """With max pooling a stage-I net that scores the background highest gives every tile the same logit
    and gets an exactly zero gradient, whatever the loss (the trap the demo's 10x-lr runs fell into);
    log-mean-exp pooling sees the ink and passes a gradient."""
    img = torch.zeros(2, 1, 64, 64, dtype=torch.uint8)
    img[0, :, 5:15, 5:15], img[0, :, 40:44, 40:60], img[1, :, 20:30, 50:60] = 255, 200, 255
    grads = {}
    for mode in ("max", "lse"):
        m = ZoomIn(3, 1, tile_size=32, s2=0.5, sub_grid=4, patch_size=8, tile_pooling=mode,
                   attention1=_BackgroundHigh())  # fmt: skip
        a, _, _ = m.stage1(img, None)
        if mode == "max":
            torch.testing.assert_close(a, torch.full_like(a, 0.25))  # every tile looks the same
        # any loss on the tile distribution: here, more mass on each image's top-left tile
        (grads[mode],) = torch.autograd.grad(-a[:, 0, 0].log().sum(), [m.attention1.w])
    assert abs(float(grads["max"])) < 1e-6  # zero up to rounding
    # top-left holds ink in image 0 only: lowering w (ink less penalised) raises that tile there
    assert float(grads["lse"]) > 0.01, float(grads["lse"])


def test_lse_pooling_values():
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(base.pool_logits(x, (8, 8), "lse"), x[:, 0])  # one pixel a cell: identity
    const = torch.full((2, 1, 8, 8), 3.0)
    torch.testing.assert_close(base.pool_logits(const, (2, 2), "lse"), torch.full((2, 2, 2), 3.0))
    big = torch.zeros(1, 1, 4, 4)
    big[..., 0, 0] = 50.0  # a far larger logit: log-mean-exp tends to it minus log(cell size)
    got = base.pool_logits(big, (1, 1), "lse")
    torch.testing.assert_close(got, torch.tensor([[[50.0 - torch.log(torch.tensor(16.0))]]]))
    assert bool(base.pool_logits(x, (2, 2), "lse").le(base.pool_logits(x, (2, 2)) + 1e-6).all())
    with pytest.raises(ValueError, match="tile_pooling"):
        ZoomIn(10, 1, tile_pooling="mean")
    with pytest.raises(ValueError, match="tile_pooling"):
        TrainConfig(tile_pooling="avg")


def test_stage1_learning_rate_group():
    from zoomkern.training.loop import param_groups

    small = dict(tile_size=32, s2=0.5, patch_size=12, lr=1e-3)
    m = build_model(TrainConfig(**small))
    lrs = lambda gs: sorted((g["lr"], len(g["params"])) for g in gs)  # noqa: E731
    n1 = len(list(m.attention1.parameters()))
    n2 = len(list(m.attention2.parameters()))
    n_rest = len(list(m.parameters())) - n1 - n2
    assert lrs(param_groups(m, TrainConfig(**small, attention_lr_mult=2.0))) == [
        (1e-3, n_rest),
        (2e-3, n1 + n2),
    ]
    got = lrs(param_groups(m, TrainConfig(**small, attention_lr_mult=2.0, attention1_lr_mult=10.0)))
    assert got == [(1e-3, n_rest), (2e-3, n2), (1e-2, n1)]
    ats = build_model(TrainConfig(**small, model="ats", attention1_lr_mult=10.0))  # no stage-I net: no group
    assert len(param_groups(ats, TrainConfig(**small, model="ats", attention1_lr_mult=10.0))) == 2


def test_cli_flags(tmp_path):
    from train import parse

    cfg = parse(
        ["--preset", "demo", "--tile-baseline", "--prior-weight-final", "0.25", "--attention1-lr-mult", "10"]
    )
    assert cfg.tile_baseline and cfg.prior_weight_final == 0.25 and cfg.attention1_lr_mult == 10.0
    with pytest.raises(SystemExit):
        parse(["--preset", "demo", "--prior-weight", "heavy"])


def test_stage_one_frozen_at_the_prior_with_a_zero_step():
    # --attention1-lr-mult 0 (the control of docs/experiments/paper.md): stage I stays exactly the ink
    # prior while the rest trains; weight decay must not move it either.
    from zoomkern.training.loop import param_groups

    cfg = TrainConfig(
        tile_size=32, s2=0.5, patch_size=12, prior=True, attention1_lr_mult=0.0, weight_decay=0.1
    )
    torch.manual_seed(0)
    m = build_model(cfg).train()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = torch.optim.AdamW(param_groups(m, cfg), lr=1e-2, weight_decay=cfg.weight_decay)
    x = (torch.rand(4, 1, 96, 96) > 0.97).to(torch.uint8) * 255
    for _ in range(3):
        out = m(x, labels=torch.tensor([0, 1, 2, 3]))
        (
            torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 1, 2, 3])) + out["aux_loss"]
        ).backward()
        opt.step()
        opt.zero_grad()
    moved = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert moved and not any(n.startswith("attention1.") for n in moved)
    assert any(n.startswith("attention2.") for n in moved) and any(n.startswith("head.") for n in moved)
    low = x.float()[:, :, ::8, ::8] / 255
    torch.testing.assert_close(
        m.tile_logits(low, (3, 3)), base.ink_prior(low, (3, 3), m.prior_eps) * m.prior_weight
    )
