"""The attention models' options, declared once.

``SamplingOptions`` holds what ZoomIn and ATS share (scales, patch size, the softmax, the ink prior, the
entropy weight, evaluation); ``ZoomInOptions`` and ``ATSOptions`` add their own. A new shared option is a
new field here and nothing else: both constructors accept it as a keyword, and ``build_model`` fills it
from the training config in one place.

    opts = ZoomInOptions(tile_size=250, s2=0.2, patch_size=50, prior=True)
    model = ZoomIn(10, 1, options=opts)                     # or, as before,
    model = ZoomIn(10, 1, tile_size=250, s2=0.2, patch_size=50, prior=True)
    model = ZoomIn(10, 1, options=opts, n_tiles=8)          # keywords override the options object
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T", bound="SamplingOptions")


@dataclass
class SamplingOptions:
    # the low-resolution view: the image downscaled by s1 (ignored when a lowres view is passed)
    s1: float = 0.12
    # full-resolution patches (int or (h, w))
    patch_size: Any = 32
    # attention softmax: temperature, and the share of mass spread uniformly (keeps every cell drawable)
    temperature: float = 1.0
    smoothing: float = 1e-4
    # the cold-start ink prior, log(mean ink + prior_eps) * prior_weight added to the attention logits
    prior: bool = False
    prior_eps: float = 1e-4
    prior_weight: float = 1.0
    # entropy regulariser weight (ATS sign: positive raises the entropy); ZoomIn: both stages by default
    entropy: float = 0.0
    # evaluation: the top cells, spread apart (no two patches of one peak), instead of random draws
    eval_topk: bool = False

    @classmethod
    def make(cls: type[_T], options: _T | None, owner: str, **overrides) -> _T:
        """``options`` (or the defaults) with ``overrides`` applied; an unknown name is a clear error."""
        if options is not None and not isinstance(options, cls):
            raise TypeError(f"{owner}: options must be a {cls.__name__}, got {type(options).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(
                f"{owner}() got unexpected keyword argument(s) {', '.join(unknown)}; "
                f"options are: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(options if options is not None else cls(), **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ZoomInOptions(SamplingOptions):
    tile_size: Any = 100
    s2: float = 0.25
    sub_grid: Any = None  # None: the stage-II view's own resolution
    n_tiles: int = 5
    n_sub: int = 2
    # None: ``entropy`` for that stage
    entropy1: float | None = None
    entropy2: float | None = None
    contrastive: bool = False
    contrastive_weight: float = 1.0
    # stage I's score-function gradient with a leave-one-out baseline (same value, same expectation,
    # lower variance): draw m's coefficient uses <g, f_m - mean of the other draws> (issue 12)
    tile_baseline: bool = False
    # how stage I pools its logit map to the tile grid: "max" or "lse" (log-mean-exp, see base.pool_logits)
    tile_pooling: str = "max"
    n_tiles_eval: int | None = None
    n_sub_eval: int | None = None
    # the attention teacher (models/teacher.py): weight of its cross-entropy targets for both stages (0:
    # off), the share of each batch it scores, how many tiles (None: all), sub-cells per tile it tries and
    # how many of the best tiles stage I is pulled towards
    teacher: float = 0.0
    teacher_frac: float = 0.5
    teacher_tiles: int | None = None
    teacher_sub: int = 2
    teacher_top: int = 2


@dataclass
class ATSOptions(SamplingOptions):
    grid: Any = None  # None: the attention map's own resolution
    n_patches: int = 10
    replace: bool = False
    n_patches_eval: int | None = None
