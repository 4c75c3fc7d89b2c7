"""Pieces shared by the attention-sampling models: input views, the ink prior, draws, aggregation."""

from __future__ import annotations

import dataclasses

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


def check_image(image: torch.Tensor, min_size: tuple[int, int], what: str) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a (B, C, H, W) tensor, got {shape}")
    H, W = image.shape[-2:]
    if H < min_size[0] or W < min_size[1]:
        raise ValueError(f"image of size {H}x{W} is smaller than the {what} {min_size[0]}x{min_size[1]}")


def pixel_scale(image: torch.Tensor) -> float | None:
    """Integer images are mapped to [0, 1]; float images are taken as already normalised."""
    if image.dtype == torch.uint8:
        return 255.0
    if image.dtype == torch.uint16:
        return 65535.0
    return None


def to_float(x: torch.Tensor) -> torch.Tensor:
    s = pixel_scale(x)
    x = x.float()
    return x / s if s else x


def low_view(image: torch.Tensor, lowres: torch.Tensor | None, scale: float, device) -> torch.Tensor:
    """The low-resolution view (B, C, h, w) float in [0, 1] on ``device``: the given one, or the image
    area-downscaled by ``scale`` (which reads the whole image: pass ``lowres`` for huge ones)."""
    if lowres is not None:
        if lowres.dim() != 4 or lowres.shape[:2] != image.shape[:2]:
            raise ValueError(
                f"lowres must be (B, C, h, w) matching image {tuple(image.shape[:2])}, "
                f"got {tuple(lowres.shape)}"
            )
        return to_float(lowres.to(device))
    H, W = image.shape[-2:]
    size = (max(1, round(H * scale)), max(1, round(W * scale)))
    return F.interpolate(to_float(image), size=size, mode="area").to(device)


def pool_logits(logits: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) -> (B, gh, gw). Max pooling: a small object in a large cell must not be diluted."""
    if tuple(logits.shape[-2:]) != tuple(grid):
        logits = F.adaptive_max_pool2d(logits, grid)
    return logits[:, 0]


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


def feature_dim(net: nn.Module, default: int | None) -> int:
    d = getattr(net, "out_dim", None) or default
    if d is None:
        raise ValueError("feature_net has no out_dim attribute; pass feature_dim=")
    return int(d)


def gather(image: torch.Tensor, offsets: torch.Tensor, size: tuple[int, int], device) -> torch.Tensor:
    """Patches (B, k, C, ph, pw) float32 on ``device``, integer images scaled to [0, 1] in the same pass.
    The image may stay on the host (pinned): only the patch bytes travel to ``device``."""
    s = pixel_scale(image)
    std = [s] * image.shape[1] if s else None
    offsets = offsets.to(image.device)
    return zk.gather_patches(image, offsets, size, dtype=torch.float32, std=std, device=device)


def entropy_loss(weight: float, entropy: torch.Tensor) -> torch.Tensor:
    # ATS sign: loss += weight * sum p log p = -weight * H, so a positive weight raises the entropy.
    return -weight * entropy.float().mean()


def select(image, rows: torch.Tensor):
    """The images at ``rows`` (a subset of the batch)."""
    if isinstance(image, torch.Tensor):
        return image[rows.to(image.device)]
    return [image[i] for i in rows.tolist()]
