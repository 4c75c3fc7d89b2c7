"""The training data: the registered data sets, Megapixel MNIST (generated on first use) with its noise
curriculum, loaders."""

from __future__ import annotations

import sys

import torch

from .batches import LazyImages, collate
from .config import TrainConfig
from .distributed import ShardedBatchSampler, World, barrier


def parse_curriculum(spec: str) -> list[tuple[int, int]]:
    """ "0:2,25:2" -> [(0, 2), (25, 2)]: (noise stamps, epochs) stages before the full data set."""
    stages = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            n, e = part.split(":")
            stages.append((int(n), int(e)))
        except ValueError:
            raise ValueError(f"noise_curriculum entries are 'n_noise:epochs', got {part!r}") from None
    return stages


def _dataset(root: str, split: str, cfg: TrainConfig, n_noise: int, n_test: int, world: World):
    from ..data.megapixel_mnist import LowViewMissing, MegapixelMNIST, add_low_view, make_megapixel_mnist

    try:
        return _matching(MegapixelMNIST(root, split, scale=cfg.scale), cfg, n_noise)
    except LowViewMissing:
        # the set is there, only not at this --scale: add the low view (seconds), keep the images
        if world.main:
            print(f"adding a low view at scale {cfg.scale} to {root}/{split}", file=sys.stderr)
            add_low_view(f"{root}/{split}", cfg.scale)
        barrier(world)
        return _matching(MegapixelMNIST(root, split, scale=cfg.scale), cfg, n_noise)
    except FileNotFoundError:
        pass
    if world.main:  # one writer; the other ranks wait at the barrier, then open what it wrote
        print(
            f"generating Megapixel MNIST in {root} ({cfg.n_train} train / {n_test} test, "
            f"{cfg.size[0]}x{cfg.size[1]}, {n_noise} noise stamps)",
            file=sys.stderr,
        )
        make_megapixel_mnist(
            root,
            cfg.n_train,
            n_test,
            size=tuple(cfg.size),
            n_noise=n_noise,
            scale=cfg.scale,
            seed=cfg.data_seed,
            binary_digit=cfg.binary_digit,
        )
    barrier(world)
    return _matching(MegapixelMNIST(root, split, scale=cfg.scale), cfg, n_noise)


def _matching(ds, cfg: TrainConfig, n_noise: int):
    """An existing data set is reused only if it is the one the config asks for: a stale directory
    from another --size or --binary-digit would otherwise train on the wrong task without a word."""
    want = dict(size=list(cfg.size), n_noise=n_noise, scale=cfg.scale, seed=cfg.data_seed,
                binary_digit=cfg.binary_digit, n_classes=cfg.n_classes)  # fmt: skip
    got = {k: ds.meta.get(k) for k in want}
    got["scale"] = ds.scale  # the low view served: the generator's, or one added by add_low_view
    bad = [f"{k}={got[k]!r} (config: {want[k]!r})" for k in want if got[k] != want[k]]
    if bad:
        raise ValueError(
            f"{ds.dir}: this data set does not match the configuration: {', '.join(bad)}. "
            "Pass another --root, or delete the directory to regenerate it."
        )
    return ds


def datasets(cfg: TrainConfig, world: World = World()):
    """(train set for each epoch, test set) of ``cfg.dataset`` (see registry.py). Sets ``cfg.n_classes``
    and ``cfg.in_channels`` from the data set, so that build_model(cfg) fits it."""
    from .registry import build

    spec = build(cfg, world)
    cfg.n_classes, cfg.in_channels = spec.n_classes, spec.in_channels
    train = spec.train
    per_epoch = list(train) if isinstance(train, list) else [train] * cfg.epochs
    return per_epoch[: cfg.epochs], spec.test


def mnist_datasets(cfg: TrainConfig, world: World = World()):
    """Megapixel MNIST: (train set for each epoch, test set). Curriculum stages get their own small-noise
    train sets."""
    train = _dataset(cfg.root, "train", cfg, cfg.n_noise, cfg.n_test, world)
    test = _dataset(cfg.root, "test", cfg, cfg.n_noise, cfg.n_test, world)
    per_epoch = []
    for n_noise, n_epochs in parse_curriculum(cfg.noise_curriculum):
        # Same seed: the generator puts the same digits at the same places, only fewer stamps; no test split.
        ds = _dataset(f"{cfg.root}_noise{n_noise}", "train", cfg, n_noise, 0, world)
        per_epoch += [ds] * n_epochs
    per_epoch += [train] * max(0, cfg.epochs - len(per_epoch))
    return per_epoch[: cfg.epochs], test


def loader(ds, cfg: TrainConfig, train: bool, epoch: int, device, world: World = World()):
    """This rank's batches. The order is fixed by (seed, epoch), so a resumed run sees the same batches."""
    sampler = ShardedBatchSampler(
        len(ds), cfg.batch_size, world, shuffle=train, seed=cfg.seed * 100003 + epoch, drop_short=train
    )
    # A generator of its own: without one the DataLoader draws its worker seed from the global RNG,
    # the stream the attention sampling uses. Images come as sources: the model reads only its patches.
    return torch.utils.data.DataLoader(
        LazyImages(ds),
        batch_sampler=sampler,
        num_workers=0,
        collate_fn=getattr(ds, "collate", collate),  # slides: padded low views plus a mask
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
    )
