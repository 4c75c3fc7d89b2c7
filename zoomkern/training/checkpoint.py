"""Checkpoints: written atomically, loaded with ``torch.load(weights_only=True)`` only.

A checkpoint holds the model, optimiser and scheduler states, the epoch, and every RNG state the run
draws from (torch CPU/CUDA, numpy, Python), so ``--resume`` continues exactly where the run stopped.
Only tensors, numbers, strings, lists and dicts are stored: loading never runs code from the file.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # numpy's state as plain values: weights_only loading refuses numpy arrays.
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": _to_lists(random.getstate()),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    random.setstate(_to_tuples(state["python"]))


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, tuple) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def save(
    path: str, *, model, optimizer, scheduler, epoch: int, config: dict, extra: dict | None = None
) -> None:
    """Write to ``path + '.tmp'`` then ``os.replace``: a crash mid-write never leaves a torn checkpoint."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "rng": rng_state(),
        "config": config,
        "extra": extra or {},
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: str, map_location="cpu") -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist (nothing to resume from)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated / corrupt / not a checkpoint
        raise RuntimeError(f"checkpoint {path!r} could not be loaded safely: {e}") from e


def restore(state: dict, *, model, optimizer=None, scheduler=None) -> int:
    """Load states in place; returns the next epoch to run."""
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["epoch"]) + 1
