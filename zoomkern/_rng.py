"""The counter-based random stream shared by every sampling backend.

Every backend (reference, C++ CPU, Triton) draws its uniforms from the same stateless hash of
``(seed0, seed1, row, column, stream)``, so a sample depends only on the generator state and
never on the thread count or the launch grid. All arithmetic is on uint32 (mod 2**32):

    hash32(x) = lowbias32: x ^= x>>16; x *= 0x7feb352d; x ^= x>>15; x *= 0x846ca68b; x ^= x>>16
    h = hash32(seed0 + hash32(seed1 + hash32(row + hash32(col + stream * 0x9E3779B9))))
    u = ((h >> 9) + 0.5) * 2**-23            # in (0, 1), exactly representable in float32 (< 1)

``stream`` is 0 for Gumbel keys (col = position) and 1 for i.i.d. draws (col = draw number).
The seed pair is drawn from the caller's ``torch.Generator`` as an int64 tensor of shape (2,)
with values in [0, 2**31), on the probabilities' device, so no host-device sync is needed.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9
STREAM_GUMBEL = 0
STREAM_DRAW = 1


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    # int64 products wrap in two's complement; their low 32 bits are the exact uint32 product.
    return (x * c) & MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on int64 tensors holding uint32 values."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


def uniform(seed: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, stream: int) -> torch.Tensor:
    """Uniforms in (0, 1), float64 (exactly the float32 value every backend computes)."""
    seed = seed.to(torch.int64)
    h = hash32(cols + (stream * GOLDEN & MASK32))
    h = hash32(rows + h)
    h = hash32(seed[1] + h)
    h = hash32(seed[0] + h)
    return ((h >> 9).to(torch.float64) + 0.5) * 2.0**-23


def make_seed(device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Two 31-bit seeds from the generator, on ``device`` (no sync on CUDA)."""
    if generator is not None and generator.device.type != torch.device(device).type:
        raise ValueError(
            f"generator is on {generator.device} but probs are on {device}; "
            "pass a generator of the probs' device"
        )
    return torch.randint(0, 2**31 - 1, (2,), generator=generator, device=device, dtype=torch.int64)
