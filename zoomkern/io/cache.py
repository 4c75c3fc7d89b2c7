"""A small LRU cache of decoded tiles, bounded in bytes.

Neighbouring patches (and the stage-II patches inside one drawn tile) touch the same tiles: decoding a
JPEG tile costs far more than copying it, so the last few are kept."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class TileCache:
    def __init__(self, max_bytes: int = 64 << 20):
        if max_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._d: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key, load) -> np.ndarray:
        tile = self._d.get(key)
        if tile is not None:
            self._d.move_to_end(key)
            self.hits += 1
            return tile
        self.misses += 1
        tile = load()
        if tile.nbytes <= self.max_bytes:
            self._d[key] = tile
            self.nbytes += tile.nbytes
            while self.nbytes > self.max_bytes:
                _, old = self._d.popitem(last=False)
                self.nbytes -= old.nbytes
        return tile

    def clear(self) -> None:
        self._d.clear()
        self.nbytes = 0
