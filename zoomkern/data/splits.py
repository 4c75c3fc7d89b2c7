"""K-fold splits: deterministic for a seed, optionally stratified by labels."""

from __future__ import annotations

import numpy as np


def kfold_indices(n: int, k: int, fold: int, seed: int = 0, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx), sorted int64, for fold ``fold`` of ``k`` over ``range(n)``.

    The k validation sets partition ``range(n)`` and their sizes differ by at most one. With ``labels``
    (length n) each class is spread over the folds as evenly as possible (counts differ by at most one).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k={k!r}: need an int >= 2")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < k:
        raise ValueError(f"n={n!r}: need an int >= k={k} (every fold must be non-empty)")
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < k:
        raise ValueError(f"fold={fold!r}: need an int in [0, {k})")
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
    else:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels: expected shape ({n},), got {labels.shape}")
        # classes laid end to end, each shuffled: dealing round-robin then balances every class and the folds
        order = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)])
    fold_of = np.empty(n, np.int64)
    fold_of[order] = np.arange(n) % k
    return np.flatnonzero(fold_of != fold).astype(np.int64), np.flatnonzero(fold_of == fold).astype(np.int64)
