"""Datasets: Megapixel MNIST (generator + memmap Dataset), the colon-cancer histology set, the Swedish
traffic signs, and k-fold splits."""

from ._image import DataError
from .colon import ColonCancer
from .megapixel_mnist import MegapixelMNIST, area_downsample, digit_pools, make_megapixel_mnist
from .splits import kfold_indices
from .traffic_signs import TrafficSigns

__all__ = [
    "ColonCancer",
    "DataError",
    "MegapixelMNIST",
    "TrafficSigns",
    "area_downsample",
    "digit_pools",
    "kfold_indices",
    "make_megapixel_mnist",
]
