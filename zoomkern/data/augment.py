"""On-the-fly training augmentations on (C, H, W) uint8 tensors.

They draw from the global torch RNG on purpose: the training checkpoint stores that state, so a resumed
run draws the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import torch


class Dihedral:
    """A random element of the square's symmetry group: flips and 90-degree rotations (exact pixel
    permutations). Histology has no preferred orientation; the MIL / Zoom-In colon-cancer work trains
    with flips and rotations. Rotations by 90/270 degrees need a square image."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        k, flip = torch.randint(0, 4, ()).item(), torch.randint(0, 2, ()).item()
        if img.shape[-1] != img.shape[-2]:
            k = 2 * (k % 2)  # 0 or 180 degrees keep a rectangle's shape
        if flip:
            img = img.flip(-1)
        return torch.rot90(img, k, (-2, -1)) if k else img


class ColorJitter:
    """Brightness and contrast scaled by factors in [1 - b, 1 + b] and [1 - c, 1 + c] (photometric only:
    a mirrored speed sign is not a speed sign, so road images get no flips)."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2):
        if not (0 <= brightness < 1 and 0 <= contrast < 1):
            raise ValueError(f"brightness={brightness}, contrast={contrast}: need values in [0, 1)")
        self.brightness, self.contrast = brightness, contrast

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        u = torch.rand(2) * 2 - 1
        b, c = 1 + self.brightness * float(u[0]), 1 + self.contrast * float(u[1])
        x = img.float()
        mean = x.mean()
        x = (x - mean) * c + mean * b
        return x.round_().clamp_(0, 255).to(torch.uint8)


class Compose:
    def __init__(self, *fns):
        self.fns = fns

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        for f in self.fns:
            img = f(img)
        return img
