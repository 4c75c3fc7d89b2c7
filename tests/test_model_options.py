"""One options object for the attention models (issue 12, item 5): keywords and options agree, a shared
option is declared once and reaches both models, bad names are clear errors, build_model uses it."""

import dataclasses

import pytest
import torch

from zoomkern.models import ATS, ATSOptions, SamplingOptions, ZoomIn, ZoomInOptions
from zoomkern.training import TrainConfig, build_model


def _fields(cls):
    return {f.name for f in dataclasses.fields(cls)}


def test_shared_options_are_declared_once_and_reach_both_models():
    shared = _fields(SamplingOptions)
    # each subclass adds only its own names: nothing shared is redeclared
    assert _fields(ZoomInOptions) & _fields(ATSOptions) == shared
    z, a = ZoomIn(10, 1, prior_weight=0.5, temperature=2.0), ATS(10, 1, prior_weight=0.5, temperature=2.0)
    for m in (z, a):
        assert {n for n in shared if hasattr(m, n)} == shared
        assert m.prior_weight == 0.5 and m.temperature == 2.0


def test_options_object_and_keywords_build_the_same_model():
    opts = ZoomInOptions(tile_size=32, s2=0.5, sub_grid=4, patch_size=12, n_tiles=3, prior=True, entropy=0.01)
    torch.manual_seed(0)
    a = ZoomIn(10, 1, options=opts)
    torch.manual_seed(0)
    b = ZoomIn(10, 1, tile_size=32, s2=0.5, sub_grid=4, patch_size=12, n_tiles=3, prior=True,
               entropy1=0.01, entropy2=0.01)  # fmt: skip
    for name in ("tile_size", "pool2", "sub_grid", "patch_size", "n_tiles", "prior", "entropy1", "entropy2"):
        assert getattr(a, name) == getattr(b, name), name
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    c = ZoomIn(10, 1, options=opts, n_tiles=7)  # a keyword overrides the object, which is not changed
    assert c.n_tiles == 7 and opts.n_tiles == 3
    assert ATS(10, 1, options=ATSOptions(n_patches=4), patch_size=12).n_patches == 4


def test_bad_options_are_named():
    with pytest.raises(TypeError, match="n_patches"):
        ZoomIn(10, 1, n_patches=4)  # an ATS option
    with pytest.raises(TypeError, match="must be a ZoomInOptions"):
        ZoomIn(10, 1, options=ATSOptions())
    with pytest.raises(TypeError, match="tile_size"):
        ATS(10, 1, tile_size=100)


def test_build_model_fills_the_options_from_the_config():
    cfg = TrainConfig(model="zoomin", tile_size=64, s2=0.5, sub_grid=(4, 4), patch_size=24, n_tiles=3,
                      entropy=0.02, prior_eps=1e-3, eval_topk=True, feature_widths=(4, 8))  # fmt: skip
    m = build_model(cfg)
    assert isinstance(m.options, ZoomInOptions)
    assert (m.options.tile_size, m.options.s1, m.entropy1, m.entropy2, m.prior_eps, m.eval_topk) == (
        64, cfg.scale, 0.02, 0.02, 1e-3, True)  # fmt: skip
    a = build_model(dataclasses.replace(cfg, model="ats", n_patches=6))
    assert isinstance(a.options, ATSOptions) and a.n_patches == 6 and a.entropy == 0.02
    assert a.n_patches_eval == 6  # no evaluation budget given: the training one
    assert build_model(dataclasses.replace(cfg, model="ats", n_patches_eval=9)).n_patches_eval == 9


def test_presets_evaluate_ats_with_zoomins_patch_budget():
    # like for like: ATS evaluates as many patches as Zoom-In's tiles x sub-cells (10 touched 30% of the
    # paper-setting digits, 48 touched 96%)
    from zoomkern.training import PRESETS

    for name in ("demo", "paper"):
        p = PRESETS[name]
        a = build_model(TrainConfig(**{**p, "model": "ats", "feature_widths": (4, 8)}))
        assert a.n_patches_eval == p["n_tiles_eval"] * p["n_sub_eval"] and a.n_patches == 10
