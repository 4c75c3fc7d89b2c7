"""Pieces shared by the attention-sampling models: input views, the ink prior, draws, aggregation."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

import zoomkern as zk


def pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def apply_options(module: nn.Module, options) -> None:
    """Every shared SamplingOptions field becomes an attribute of the model (``model.prior``, ...), so a
    new shared option needs no per-model code; ``patch_size`` is normalised to a pair."""
    from .options import SamplingOptions

    for f in dataclasses.fields(SamplingOptions):
        setattr(module, f.name, getattr(options, f.name))
    module.patch_size = pair(options.patch_size)


# A batch of images is a (B, C, H, W) tensor or a list of B zk.io sources (files, memmaps, arrays read
# patch by patch). The helpers below are the only places the models tell the two apart.


def sources(image):
    """The list of zk.io sources when ``image`` is one (or a list of them), else None."""
    if isinstance(image, torch.Tensor):
        return None
    from ..io import sources as _sources

    return _sources(image)


def check_image(image, min_size: tuple[int, int], what: str) -> None:
    srcs = sources(image)
    if srcs is None:
        if not isinstance(image, torch.Tensor) or image.dim() != 4:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image must be a (B, C, H, W) tensor or a list of zk.io sources, got {shape}")
        H, W = image.shape[-2:]
        if H < min_size[0] or W < min_size[1]:
            raise ValueError(f"image of size {H}x{W} is smaller than the {what} {min_size[0]}x{min_size[1]}")
        return
    for s in srcs:
        H, W = s.shape[1:]
        if H < min_size[0] or W < min_size[1]:
            raise ValueError(
                f"{s.name}: image of size {H}x{W} is smaller than the {what} {min_size[0]}x{min_size[1]}"
            )
    first = srcs[0]
    for s in srcs[1:]:
        # Sizes may differ (slides): they share the canvas of the largest; channels and dtype may not.
        if s.shape[0] != first.shape[0] or s.dtype != first.dtype:
            raise ValueError(
                f"images in one batch must share channels and dtype: {first.name} is {first.shape} "
                f"{first.dtype}, {s.name} is {s.shape} {s.dtype}"
            )


def image_shape(image) -> tuple[int, int, int, int]:
    """(B, C, H, W) of a tensor, or of a list of sources: the largest H and W (the batch's canvas;
    a smaller source reads zeros outside itself, and padding_mask keeps attention off them)."""
    srcs = sources(image)
    if srcs is None:
        return tuple(image.shape)
    return (len(srcs), srcs[0].shape[0], max(s.shape[1] for s in srcs), max(s.shape[2] for s in srcs))


def padding_mask(image, low_size, device) -> torch.Tensor | None:
    """(B, h, w) bool, True over each source's own part of the canvas, for sources of different sizes
    (None when the batch is one size): the low view of the canvas is padded where a source ends."""
    srcs = sources(image)
    if srcs is None or len({s.shape[1:] for s in srcs}) == 1:
        return None
    _, _, H, W = image_shape(srcs)
    h, w = low_size
    m = torch.zeros((len(srcs), h, w), dtype=torch.bool)
    for i, s in enumerate(srcs):
        m[i, : max(1, math.ceil(s.shape[1] * h / H)), : max(1, math.ceil(s.shape[2] * w / W))] = True
    return m.to(device)


def select(image, idx: torch.Tensor):
    """The images at ``idx`` (a 1-D index tensor) of a batch."""
    srcs = sources(image)
    if srcs is None:
        return image[idx.to(image.device)]
    return [srcs[i] for i in idx.tolist()]


def pixel_scale(image) -> float | None:
    """Integer images are mapped to [0, 1]; float images are taken as already normalised."""
    srcs = sources(image)
    dtype = srcs[0].dtype if srcs is not None else image.dtype
    if dtype == torch.uint8:
        return 255.0
    if dtype == torch.uint16:
        return 65535.0
    return None


def to_float(x: torch.Tensor) -> torch.Tensor:
    s = pixel_scale(x)
    x = x.float()
    return x / s if s else x


def low_view(image, lowres: torch.Tensor | None, scale: float, device) -> torch.Tensor:
    """The low-resolution view (B, C, h, w) float in [0, 1] on ``device``: the given one, or the image
    area-downscaled by ``scale``. A tensor image is read whole for that (pass ``lowres`` for huge ones);
    a source reads it from its nearest pyramid level (``Source.lowres``)."""
    B, C, H, W = image_shape(image)
    if lowres is not None:
        if lowres.dim() != 4 or tuple(lowres.shape[:2]) != (B, C):
            got = tuple(lowres.shape)
            raise ValueError(f"lowres must be (B, C, h, w) matching image {(B, C)}, got {got}")
        return to_float(lowres.to(device))
    size = zk.io.scaled_size((H, W), scale)
    srcs = sources(image)
    if srcs is not None:
        # each source at the same scale, zero-padded to the canvas (see padding_mask)
        low = torch.zeros((B, C, *size), dtype=srcs[0].dtype)
        for i, s in enumerate(srcs):
            own = zk.io.scaled_size(s.shape[1:], scale)
            low[i, :, : own[0], : own[1]] = s.lowres((min(own[0], size[0]), min(own[1], size[1])))
        return to_float(low.to(device))
    return F.interpolate(to_float(image), size=size, mode="area").to(device)


POOLINGS = ("max", "lse")


def pool_logits(logits: torch.Tensor, grid: tuple[int, int], mode: str = "max") -> torch.Tensor:
    """(B, 1, h, w) -> (B, gh, gw). "max": a small object in a large cell must not be diluted. "lse":
    log of the mean of exp(logit) over the cell, a smooth maximum whose gradient reaches every pixel.

    Why "lse" (issue 12): with max pooling, once a net scores the empty background above everything
    else (it did on the demo, at a 10x stage-I learning rate), every cell's maximum is a background pixel
    of the same value: the pooled logits are equal, and their gradient, sum_j dL/dl_j times the same
    background derivative, is exactly zero (softmax gradients sum to zero), so the net cannot leave."""
    if tuple(logits.shape[-2:]) == tuple(grid):
        return logits[:, 0]
    if mode == "max":
        return F.adaptive_max_pool2d(logits, grid)[:, 0]
    if mode != "lse":
        raise ValueError(f"pooling mode must be one of {POOLINGS}, got {mode!r}")
    top = logits.detach().float().amax((1, 2, 3), keepdim=True)  # per image: exp stays in range
    mean = F.adaptive_avg_pool2d(torch.exp(logits.float() - top), grid)
    return (torch.log(mean.clamp_min(1e-30)) + top)[:, 0]


def grid_mask(mask: torch.Tensor, grid: tuple[int, int], device) -> torch.Tensor:
    """(B, h, w) bool at any resolution -> (B, gh, gw) bool: a cell is allowed when any of its pixels is
    (max pooling: a tile holding a sliver of tissue may hold the evidence)."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 3 or mask.dtype != torch.bool:
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a (B, h, w) bool tensor, got {got}")
    m = mask.to(device)
    if tuple(m.shape[-2:]) != tuple(grid):
        m = F.adaptive_max_pool2d(m[:, None].float(), grid)[:, 0] > 0
    return m


def ink_prior(view: torch.Tensor, grid: tuple[int, int], eps: float) -> torch.Tensor:
    """log(mean ink per cell + eps), (B, gh, gw): the cold-start prior of ALGORITHMS.md.
    Computed under no_grad: it is a fixed bias, not something to learn through."""
    with torch.no_grad():
        ink = F.adaptive_avg_pool2d(view.mean(1, keepdim=True).float(), grid)[:, 0]
        return torch.log(ink.clamp_min(0) + eps)


def invert(probs: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(1 - p) renormalised per sample: the contrastive pseudo-negative distribution, zero outside
    ``allowed`` (B, *S) bool when given. A one-cell grid (p = 1, so 1 - p is all zero) gets the uniform
    distribution over the allowed cells, i.e. that cell: there is nothing else to look at on that level
    (the other level may still invert)."""
    q = (1.0 - probs).clamp_min(0).reshape(probs.shape[0], -1)
    ok = torch.ones_like(q) if allowed is None else allowed.reshape(q.shape).to(q.dtype)
    q = q * ok
    total = q.sum(1, keepdim=True)
    uniform = ok / ok.sum(1, keepdim=True).clamp_min(1)
    q = torch.where(total > 0, q / total.clamp_min(1e-30), uniform)
    return q.reshape(probs.shape)


def topk_spread(probs: torch.Tensor, k: int, spacing: tuple[float, float]) -> torch.Tensor:
    """(B, gh, gw) -> (B, k) distinct flat indices: greedy non-maximum suppression on the grid.

    Each kept cell suppresses the cells closer than ``spacing`` (rows, cols: a patch measured in cells),
    whose patches would overlap its own; plain top-k keeps the neighbours of one attention peak (on ATS's
    180 x 180 grid 10 kept cells covered 1.4 of 5 digits where 10 draws covered 4.0). When no unsuppressed
    cell is left, the suppressed ones follow by probability, so k distinct cells are always returned.
    """
    B, gh, gw = probs.shape
    flat = probs.detach().reshape(B, -1).float()
    rows = torch.arange(gh, device=flat.device).repeat_interleave(gw)
    cols = torch.arange(gw, device=flat.device).repeat(gh)
    free = torch.ones_like(flat, dtype=torch.bool)
    taken = torch.zeros_like(free)
    out = []
    for _ in range(k):
        # probabilities lie in [0, 1]: free cells score p, suppressed p - 2, taken ones -inf
        score = torch.where(free, flat, flat - 2.0).masked_fill(taken, float("-inf"))
        i = score.argmax(1)
        out.append(i)
        taken[torch.arange(B, device=flat.device), i] = True
        near = ((rows[None] - rows[i][:, None]).abs() < spacing[0]) & (
            (cols[None] - cols[i][:, None]).abs() < spacing[1]
        )
        free &= ~near
    return torch.stack(out, 1)


def draw(probs: torch.Tensor, k: int, replace: bool, deterministic: bool, generator=None, spacing=None):
    """(B, *S) -> (indices (B, k'), sampled probs (B, k')). Deterministic: the top-k cells (k' <= k,
    distinct), spread apart by ``spacing`` (cells, see topk_spread) when given; otherwise
    zk.sample_patches."""
    if deterministic:
        flat = probs.reshape(probs.shape[0], -1)
        k = min(k, flat.shape[1])
        if spacing is not None and probs.dim() == 3:
            idx = topk_spread(probs, k, spacing)
        else:
            idx = torch.topk(flat.detach(), k, dim=1).indices
        return idx, torch.gather(flat, 1, idx)
    s = zk.sample_patches(probs, k, replace=replace, generator=generator)
    return s.indices, s.probs


def spacing(patch: tuple[int, int], grid: tuple[int, int], extent: tuple[int, int]) -> tuple[float, float]:
    """A patch's size in cells of ``grid`` laid over ``extent`` pixels (the top-k suppression radius)."""
    return (patch[0] * grid[0] / extent[0], patch[1] * grid[1] / extent[1])


def aggregate(
    features: torch.Tensor, probs: torch.Tensor, replace: bool, deterministic: bool
) -> torch.Tensor:
    """(B, k, D), (B, k) -> (B, D) float32. Sampled: the unbiased zk.expectation. Deterministic top-k: the
    attention-weighted mean of the kept cells (a biased but noise-free evaluation estimate).

    Always in float32, whatever autocast made of the features: cast to float16, probabilities under 6e-5
    (float16's smallest normal) were clamped and their 1/p gradients came out up to 61x too small."""
    features, probs = features.float(), probs.float()
    if deterministic:
        w = probs / probs.sum(1, keepdim=True).clamp_min(1e-12)
        return (w.unsqueeze(-1) * features).sum(1)
    with torch.autocast(features.device.type, enabled=False):
        return zk.expectation(features, probs, replace=replace)


def loo_baseline(features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """(B, N, D) features of N draws WITH replacement, their sampled probabilities (B, N) -> (B, D) zeros
    whose gradient subtracts a leave-one-out baseline from the score-function term of zk.expectation.

    zk.expectation gives draw m's probability the gradient <g, f_m> / (N p_m); this term adds
    -<g, b_m> / (N p_m) with b_m = the mean of the OTHER draws' features (detached), so draw m is pushed up
    or down by how much better it did than its companions, not by the features' common offset. b_m does
    not depend on draw m (i.i.d. draws), so the expectation of the gradient is unchanged; its forward
    value is exactly zero (p / p == 1 in floating point, and the sampled p are > 0)."""
    n = features.shape[1]
    if n < 2:
        return features.new_zeros(features.shape[0], features.shape[-1], dtype=torch.float32)
    f = features.detach().float()
    b = (f.sum(1, keepdim=True) - f) / (n - 1)
    p = probs.float()
    return (b * (1.0 - p / p.detach()).unsqueeze(-1)).mean(1)


def feature_dim(net: nn.Module, default: int | None) -> int:
    d = getattr(net, "out_dim", None) or default
    if d is None:
        raise ValueError("feature_net has no out_dim attribute; pass feature_dim=")
    return int(d)


def gather(image, offsets: torch.Tensor, size: tuple[int, int], device, level: int = 0) -> torch.Tensor:
    """Patches (B, k, C, ph, pw) float32 on ``device``, integer images scaled to [0, 1] in the same pass.
    The image may stay on the host (pinned, or in its files): only the patch bytes travel to ``device``."""
    s = pixel_scale(image)
    std = [s] * image_shape(image)[1] if s else None
    if sources(image) is None:
        offsets = offsets.to(image.device)
    kw = dict(level=level) if level else {}
    return zk.gather_patches(image, offsets, size, dtype=torch.float32, std=std, device=device, **kw)


def tile_views(image, offsets: torch.Tensor, tile: tuple[int, int], pool: int, device) -> torch.Tensor:
    """Views (B*N, C, th // pool, tw // pool) float of the tiles at level-0 ``offsets`` (B, N, 2), each
    area-pooled by ``pool``. A tensor (or a one-level source) reads the tiles at full resolution and
    pools them; a pyramid source reads them from its coarsest level not coarser than ``pool`` (1/pool^2
    of the bytes when a level matches) and area-resamples what is left."""
    srcs = sources(image)
    view = (tile[0] // pool, tile[1] // pool)
    levels = [_level_at_most(s, pool) for s in srcs] if srcs is not None else None
    if levels is None or not any(levels):
        tiles = gather(image, offsets, tile, device).flatten(0, 1)
        return F.avg_pool2d(tiles, pool) if pool > 1 else tiles
    out = []
    for s, lv, off in zip(srcs, levels, offsets.detach().cpu(), strict=True):
        (H0, W0), (H, W) = s.levels[0], s.levels[lv]
        fy, fx = H0 / H, W0 / W
        lo = torch.stack([torch.div(off[:, 0], fy, rounding_mode="floor"),
                          torch.div(off[:, 1], fx, rounding_mode="floor")], -1).long()  # fmt: skip
        size = (max(1, math.ceil(tile[0] / fy)), max(1, math.ceil(tile[1] / fx)))
        t = gather(s, lo[None], size, device, level=lv)[0]  # (N, C, h, w)
        out.append(F.interpolate(t, size=view, mode="area") if tuple(t.shape[-2:]) != view else t)
    return torch.cat(out)


def _level_at_most(src, pool: int) -> int:
    """The coarsest level of ``src`` whose downsample is at most ``pool`` (0 when only level 0 is)."""
    best = 0
    for lv in range(1, len(src.levels)):
        if src.downsample(lv) <= pool * (1 + 1e-3):
            best = lv if src.downsample(lv) > src.downsample(best) else best
    return best


def full_image(image, device) -> torch.Tensor:
    """The whole batch (B, C, H, W) as float on ``device`` (integers scaled to [0, 1]): for the CNN that
    looks at every pixel. From sources this reads every pixel, as that model must."""
    srcs = sources(image)
    if srcs is None:
        return to_float(image.to(device))
    B, C, H, W = image_shape(image)
    zero = torch.zeros((B, 1, 2), dtype=torch.int64)
    return gather(srcs, zero, (H, W), device)[:, 0]


def entropy_loss(weight: float, entropy: torch.Tensor) -> torch.Tensor:
    # ATS sign: loss += weight * sum p log p = -weight * H, so a positive weight raises the entropy.
    return -weight * entropy.float().mean()
