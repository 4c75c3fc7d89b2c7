"""The data sets ``train.py --dataset NAME`` knows: name -> builder(cfg, world) -> DataSpec.

To add one (e.g. ``slides``), write a builder and register it::

    @register("slides")
    def _slides(cfg, world):
        return DataSpec(train=..., test=..., n_classes=2, in_channels=3)

``train`` is a Dataset, or a list with one Dataset per epoch (a curriculum). Each Dataset yields
(image (C, H, W), lowres (C, h, w), label) and has ``labels``; ``cfg.n_classes`` and ``cfg.in_channels``
are set from the spec before the model is built. Builders import their data modules lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .config import TrainConfig
from .distributed import World


class DataSpec(NamedTuple):
    train: Any  # Dataset, or list of Datasets (one per epoch)
    test: Any
    n_classes: int
    in_channels: int


DATASETS: dict[str, Callable[[TrainConfig, World], DataSpec]] = {}


def register(name: str):
    def deco(fn):
        if name in DATASETS:
            raise ValueError(f"data set {name!r} is already registered")
        DATASETS[name] = fn
        return fn

    return deco


def build(cfg: TrainConfig, world: World = World()) -> DataSpec:
    if cfg.dataset not in DATASETS:
        raise ValueError(f"dataset={cfg.dataset!r}: unknown; choose one of {sorted(DATASETS)}")
    spec = DATASETS[cfg.dataset](cfg, world)
    if cfg.in_channels is not None and cfg.in_channels != spec.in_channels:
        raise ValueError(
            f"in_channels={cfg.in_channels} but the {cfg.dataset} images have {spec.in_channels} channels"
        )
    return spec


@register("megapixel_mnist")
def _megapixel_mnist(cfg: TrainConfig, world: World) -> DataSpec:
    from .data import mnist_datasets

    per_epoch, test = mnist_datasets(cfg, world)
    return DataSpec(per_epoch, test, cfg.n_classes, 1)


@register("colon")
def _colon(cfg: TrainConfig, world: World) -> DataSpec:
    from ..data.augment import Dihedral
    from ..data.colon import ColonCancer

    kw = dict(folds=cfg.folds if cfg.folds >= 2 else 10, seed=cfg.data_seed, scale=cfg.scale)
    train = ColonCancer(cfg.root, cfg.fold, "train", transform=Dihedral() if cfg.augment else None, **kw)
    test = ColonCancer(cfg.root, cfg.fold, "valid", **kw)
    return DataSpec(train, test, len(train.classes), 3)


@register("traffic_signs")
def _traffic_signs(cfg: TrainConfig, world: World) -> DataSpec:
    from ..data.augment import ColorJitter
    from ..data.traffic_signs import TrafficSigns

    jitter = ColorJitter() if cfg.augment else None
    if cfg.folds >= 2:  # k-fold cross-validation over Set1: train on K-1 folds, test on fold cfg.fold
        kw = dict(scale=cfg.scale, fold=cfg.fold, folds=cfg.folds, seed=cfg.data_seed)
        train = TrafficSigns(cfg.root, "train", transform=jitter, **kw)
        test = TrafficSigns(cfg.root, "valid", **kw)
    else:
        train = TrafficSigns(cfg.root, "train", scale=cfg.scale, transform=jitter)
        test = TrafficSigns(cfg.root, "test", scale=cfg.scale)
    return DataSpec(train, test, len(train.classes), 3)


@register("slides")
def _slides(cfg: TrainConfig, world: World) -> DataSpec:
    from ..data.slides import SlideFolder

    kw = dict(scale=cfg.scale, tissue=cfg.tissue_mask)
    train = SlideFolder(cfg.root, cfg.labels, **kw)
    test = SlideFolder(cfg.root, cfg.test_labels, classes=train.classes, **kw) if cfg.test_labels else train
    return DataSpec(train, test, len(train.classes), train.open(0).shape[0])
