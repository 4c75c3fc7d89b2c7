"""Datasets: Megapixel MNIST (generator + memmap Dataset) and k-fold splits."""

from .megapixel_mnist import MegapixelMNIST, area_downsample, digit_pools, make_megapixel_mnist
from .splits import kfold_indices

__all__ = ["MegapixelMNIST", "area_downsample", "digit_pools", "kfold_indices", "make_megapixel_mnist"]
