"""The counter-based random stream shared by every sampling backend.

Every backend (reference, C++ CPU, Triton) draws its uniforms from the same stateless hash of
``(seed0, seed1, row, column, stream)``, so a sample depends only on the generator state and
never on the thread count or the launch grid. All hashing is on uint32 (mod 2**32):

    hash32(x) = lowbias32: x ^= x>>16; x *= 0x7feb352d; x ^= x>>15; x *= 0x846ca68b; x ^= x>>16
    h(col, stream) = hash32(seed0 + hash32(seed1 + hash32(row + hash32(col + stream * 0x9E3779B9))))

Gumbel keys (stream 0, col = position) use all 32 bits: v = (h + 0.5) * 2**-32, exact in float64; in
float32 it is rounded to nearest (every backend rounds the exact value once, so they agree bit for bit)
and clamped to 1 - 2**-24. Small v keep full relative precision, so the noise does not saturate (the old
23-bit uniforms capped the Gumbel noise at 16.6, i.e. ties once a row had more than ~1.7e7 cells).
The exponential E = -log1p(-v) > 0 and the key is p / E (larger first): the exponential race, which
orders cells exactly as the Gumbel key log p - log E without computing log p.

With-replacement draws (col = draw number) use two hashes, streams 1 and 2, for a 52-bit uniform
u = ((h1 >> 6) * 2**26 + (h2 >> 6) + 0.5) * 2**-52, exact in float64, searched in a float64 cdf, so no
probability is quantised coarser than 2**-52 of the row's mass.

The seed pair is drawn from the caller's ``torch.Generator`` as an int64 tensor of shape (2,)
with values in [0, 2**31), on the probabilities' device, so no host-device sync is needed.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9
STREAM_GUMBEL = 0
STREAM_DRAW = 1
STREAM_DRAW_LO = 2
V32_MAX = 1.0 - 2.0**-24  # the largest float32 below 1: float32 uniforms are clamped to it


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


def counter_hash(seed: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, stream: int) -> torch.Tensor:
    """The uint32 hash (in int64) of (seed, row, col, stream); rows/cols broadcast."""
    seed = seed.to(torch.int64)
    h = hash32(cols + (stream * GOLDEN & MASK32))
    h = hash32(rows + h)
    h = hash32(seed[1] + h)
    return hash32(seed[0] + h)


def gumbel_uniform(seed, rows, cols, dtype: torch.dtype) -> torch.Tensor:
    """v in (0, 1) of the Gumbel stream, in ``dtype`` (float32: rounded once, then clamped)."""
    v = (counter_hash(seed, rows, cols, STREAM_GUMBEL).to(torch.float64) + 0.5) * 2.0**-32
    if dtype == torch.float32:
        v = v.to(torch.float32).clamp_max(V32_MAX)
    return v


def draw_uniform(seed, rows, draws) -> torch.Tensor:
    """u in (0, 1) of the draw stream, float64 with 52 random bits."""
    hi = counter_hash(seed, rows, draws, STREAM_DRAW) >> 6
    lo = counter_hash(seed, rows, draws, STREAM_DRAW_LO) >> 6
    return ((hi * 2**26 + lo).to(torch.float64) + 0.5) * 2.0**-52


def make_seed(device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Two 31-bit seeds from the generator, on ``device`` (no sync on CUDA)."""
    if generator is not None and generator.device.type != torch.device(device).type:
        raise ValueError(
            f"generator is on {generator.device} but probs are on {device}; "
            "pass a generator of the probs' device"
        )
    return torch.randint(0, 2**31 - 1, (2,), generator=generator, device=device, dtype=torch.int64)
