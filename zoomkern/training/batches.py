"""Lazy batches: the loader hands the model image sources, not collated pixels.

Collating whole images (a 1500x1500 canvas is 2.25 MB; a slide does not fit at all) cost most of the
CPU training step, and on CUDA the loop then copied every image to the device although the models read
only their patches. Here a batch is ``(images, lowres, labels)`` with ``images`` a list of zk.io sources
(memmap rows, files) when the dataset can give them, the low-resolution views stacked (they are what
stage I reads whole) and the labels a tensor."""

from __future__ import annotations

import torch


class LazyImages(torch.utils.data.Dataset):
    """``ds`` with its images as sources: ``ds.get(i, lazy=True)`` where the dataset has it; datasets
    that already return sources (or only tensors) pass through unchanged."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getattr__(self, name):
        # The wrapped dataset's attributes (boxes, labels, classes, paths, ...) for whoever inspects
        # loader.dataset, e.g. the patch diagnosis. "ds" itself is absent only while unpickling.
        if name == "ds":
            raise AttributeError(name)
        return getattr(self.ds, name)

    def __getitem__(self, i):
        get = getattr(self.ds, "get", None)
        return get(i, lazy=True) if get is not None else self.ds[i]


def collate(batch):
    """[(image, lowres, label)] -> (images, lowres (B, C, h, w), labels (B,) int64). Sources stay a list;
    tensors are stacked as before (a dataset of in-memory tensors)."""
    from ..io import Source

    images, lows, labels = zip(*batch, strict=True)
    if all(isinstance(im, Source) for im in images):
        images = list(images)
    else:
        images = torch.stack([torch.as_tensor(im) for im in images])
    low = torch.stack([torch.as_tensor(lo) for lo in lows])
    return images, low, torch.as_tensor(labels, dtype=torch.int64)
