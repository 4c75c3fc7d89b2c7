"""Datasets: Megapixel MNIST (generator + memmap Dataset), the colon-cancer histology set, the Swedish
traffic signs, slide folders, and k-fold splits."""

from ._image import DataError
from .colon import ColonCancer
from .megapixel_mnist import MegapixelMNIST, add_low_view, area_downsample, digit_pools, make_megapixel_mnist
from .slides import SlideFolder, collate_slides, tissue_mask
from .splits import kfold_indices
from .traffic_signs import TrafficSigns

__all__ = [
    "ColonCancer",
    "DataError",
    "MegapixelMNIST",
    "SlideFolder",
    "TrafficSigns",
    "area_downsample",
    "collate_slides",
    "digit_pools",
    "kfold_indices",
    "make_megapixel_mnist",
    "add_low_view",
    "tissue_mask",
]
