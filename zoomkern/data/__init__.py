"""Datasets: Megapixel MNIST (generator + memmap Dataset), slide folders, and k-fold splits."""

from .megapixel_mnist import MegapixelMNIST, area_downsample, digit_pools, make_megapixel_mnist
from .slides import SlideFolder, collate_slides, tissue_mask
from .splits import kfold_indices

__all__ = [
    "SlideFolder",
    "collate_slides",
    "tissue_mask",
    "MegapixelMNIST",
    "area_downsample",
    "digit_pools",
    "kfold_indices",
    "make_megapixel_mnist",
]
