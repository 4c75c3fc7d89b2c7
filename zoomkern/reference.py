"""Pure-PyTorch references, written for clarity.

Two levels live here:

* kernel level (``softmax_fwd``, ``softmax_bwd``, ``sample``, ``gather``): the flat interface every
  backend implements (see ``zoomkern/backends.py``). Inputs are already validated and flattened.
* op level (``<op>_ref``): same signature as the public op, used by tests and benchmarks.
"""

from __future__ import annotations

import math

import torch

from . import _rng

# ----------------------------------------------------------------------------- kernel level


def softmax_fwd(x, mask, temperature: float, smoothing: float):
    """x (B, N) float32/64 -> probs (B, N) same dtype, entropy (B,) same dtype."""
    z = x / temperature
    if mask is not None:
        z = z.masked_fill(~mask, -math.inf)
    q = torch.softmax(z, dim=1)
    if smoothing:
        n_valid = mask.sum(1, keepdim=True).to(x.dtype) if mask is not None else x.shape[1]
        p = (1.0 - smoothing) * q + smoothing / n_valid
        if mask is not None:
            p = p.masked_fill(~mask, 0.0)
    else:
        p = q
    ent = -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(1)
    return p, ent


def softmax_bwd(p, grad_p, grad_ent, mask, temperature: float, smoothing: float):
    """Gradient of (probs, entropy) w.r.t. the logits, from the saved probs alone."""
    logp = torch.where(p > 0, torch.log(p), torch.zeros_like(p))
    g = grad_p - grad_ent[:, None] * (logp + 1.0)
    if smoothing:
        if smoothing >= 1.0:
            return torch.zeros_like(p)
        n_valid = mask.sum(1, keepdim=True).to(p.dtype) if mask is not None else p.shape[1]
        q = ((p - smoothing / n_valid) / (1.0 - smoothing)).clamp_min(0.0)
        if mask is not None:
            q = q.masked_fill(~mask, 0.0)
        g = g * (1.0 - smoothing)
    else:
        q = p
    gz = q * (g - (q * g).sum(1, keepdim=True))
    return gz / temperature


def sample(probs, k: int, replace: bool, seed):
    """probs (B, N) float32/64 -> indices (B, k) int64, from the shared counter-based stream.

    Without replacement: the k largest keys p / E, E = -log1p(-v) (the exponential race, equivalent to
    Gumbel-top-k on log p), -1 where p <= 0, larger key first and the lower index first on ties (so rows
    with fewer than k positive cells continue with their zero cells in index order).
    With replacement: a float64 cdf searched with 52-bit uniforms, clamped to the last positive cell.
    """
    B, N = probs.shape
    rows = torch.arange(B, device=probs.device, dtype=torch.int64)[:, None]
    if not replace:
        cols = torch.arange(N, device=probs.device, dtype=torch.int64)[None, :]
        e = -torch.log1p(-_rng.gumbel_uniform(seed, rows, cols, probs.dtype))
        keys = torch.where(probs > 0, probs / e, -1.0)
        return torch.sort(keys, dim=1, descending=True, stable=True).indices[:, :k]
    draws = torch.arange(k, device=probs.device, dtype=torch.int64)[None, :]
    u = _rng.draw_uniform(seed, rows, draws)
    cdf = torch.cumsum(probs.to(torch.float64), dim=1)
    idx = torch.searchsorted(cdf, (u * cdf[:, -1:]).contiguous(), right=True)
    # Rounding can push a draw past the last positive cell; clamp back onto it.
    last_pos = (N - 1) - torch.argmax(torch.flip(probs > 0, [1]).to(torch.uint8), dim=1)
    return torch.minimum(idx, last_pos[:, None])


def _patch_coords(offsets, ph: int, pw: int):
    ys = offsets[..., 0, None] + torch.arange(ph, device=offsets.device)  # (B, k, ph)
    xs = offsets[..., 1, None] + torch.arange(pw, device=offsets.device)  # (B, k, pw)
    return ys, xs


def gather(image, offsets, ph: int, pw: int, layout: str, out_dtype, mean, std):
    """image (B, C, H, W) or (B, H, W, C) -> (B, k, C, ph, pw) in out_dtype, zero outside."""
    img = image if layout == "CHW" else image.permute(0, 3, 1, 2)
    B, C, H, W = img.shape
    ys, xs = _patch_coords(offsets.to(img.device), ph, pw)
    vy = (ys >= 0) & (ys < H)
    vx = (xs >= 0) & (xs < W)
    yc, xc = ys.clamp(0, H - 1), xs.clamp(0, W - 1)
    b = torch.arange(B, device=img.device)[:, None, None, None]
    # (B, k, ph, pw, C) by advanced indexing, then channels first.
    vals = img.permute(0, 2, 3, 1)[b, yc[..., :, None], xc[..., None, :]]
    # uint16 has few kernels in older torch (no CPU where/mul in 2.11): mask in int32, then convert.
    work = torch.int32 if out_dtype == torch.uint16 else out_dtype
    vals = vals.permute(0, 1, 4, 2, 3).to(work)
    valid = (vy[..., :, None] & vx[..., None, :])[:, :, None]
    vals = torch.where(valid, vals, torch.zeros((), dtype=work, device=vals.device)).to(out_dtype)
    if mean is not None:
        vals = vals - mean.to(out_dtype).view(1, 1, C, 1, 1)
    if std is not None:
        vals = vals / std.to(out_dtype).view(1, 1, C, 1, 1)
    return vals.contiguous()


def gather_bwd(grad, image_shape, offsets, ph: int, pw: int, layout: str, std, image_dtype):
    """Scatter-add the patch gradients back into an image-shaped tensor (overlaps add)."""
    if layout == "CHW":
        B, C, H, W = image_shape
    else:
        B, H, W, C = image_shape
    g = grad
    if std is not None:
        g = g / std.to(g.dtype).view(1, 1, C, 1, 1)
    ys, xs = _patch_coords(offsets, ph, pw)
    valid = ((ys >= 0) & (ys < H))[..., :, None] & ((xs >= 0) & (xs < W))[..., None, :]
    flat = ys.clamp(0, H - 1)[..., :, None] * W + xs.clamp(0, W - 1)[..., None, :]  # (B,k,ph,pw)
    g = g * valid[:, :, None].to(g.dtype)
    out = torch.zeros(B, C, H * W, dtype=g.dtype, device=g.device)
    idx = flat[:, :, None].expand(-1, -1, C, -1, -1).permute(0, 2, 1, 3, 4).reshape(B, C, -1)
    out.scatter_add_(2, idx, g.permute(0, 2, 1, 3, 4).reshape(B, C, -1))
    out = out.view(B, C, H, W)
    if layout == "HWC":
        out = out.permute(0, 2, 3, 1).contiguous()
    return out.to(image_dtype)


# ----------------------------------------------------------------------------- op level


def spatial_softmax_ref(logits, *, temperature=1.0, smoothing=0.0, mask=None, return_entropy=False):
    B = logits.shape[0]
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    x = logits.reshape(B, -1).to(acc)
    m = mask.reshape(B, -1) if mask is not None else None
    p, ent = softmax_fwd(x, m, float(temperature), float(smoothing))
    p = p.to(logits.dtype).reshape(logits.shape)
    return (p, ent.to(logits.dtype)) if return_entropy else p


def sample_patches_ref(probs, k, *, replace=False, generator=None, seed=None):
    B = probs.shape[0]
    flat = probs.reshape(B, -1)
    acc = torch.float64 if flat.dtype == torch.float64 else torch.float32
    if seed is None:
        seed = _rng.make_seed(probs.device, generator)
    idx = sample(flat.detach().to(acc), int(k), bool(replace), seed)
    return idx, torch.gather(flat, 1, idx)


def expectation_weights(sampled_probs, replace: bool):
    """Per-draw weights w (B, k) with F = sum_m w_m f_m."""
    k = sampled_probs.shape[1]
    if replace:
        return torch.full_like(sampled_probs, 1.0 / k)
    excl = torch.cumsum(sampled_probs, 1) - sampled_probs  # exclusive: mass drawn before m
    pm = 1.0 - excl
    later = torch.arange(k - 1, -1, -1, device=sampled_probs.device, dtype=sampled_probs.dtype)
    return (later * sampled_probs + pm) / k


def expectation_ref(features, sampled_probs, *, replace=False):
    """Forward value only (autograd through this is the biased plug-in gradient)."""
    w = expectation_weights(sampled_probs, replace).to(features.dtype)
    return (w.view(*w.shape, *([1] * (features.dim() - 2))) * features).sum(1)


def expectation_prob_grad_ref(features, sampled_probs, grad, *, replace=False):
    """The unbiased probability gradient of ALGORITHMS.md, (B, k)."""
    B, k = sampled_probs.shape
    gf = (features * grad[:, None]).reshape(B, k, -1).sum(-1).to(sampled_probs.dtype)
    p = sampled_probs.clamp_min(torch.finfo(sampled_probs.dtype).tiny)
    if replace:
        return gf / (k * p)
    excl = torch.cumsum(sampled_probs, 1) - sampled_probs
    pm = 1.0 - excl
    later = torch.arange(k - 1, -1, -1, device=p.device, dtype=p.dtype)
    return (later * gf + gf * pm / p) / k


def cells_to_offsets_ref(indices, grid_size, image_size, patch_size):
    gh, gw = grid_size
    H, W = image_size
    ph, pw = patch_size
    r, c = indices // gw, indices % gw
    # Cell centre (r + 1/2) * H / gh, floored, minus half the patch: exact integer arithmetic.
    y = ((2 * r + 1) * H) // (2 * gh) - ph // 2
    x = ((2 * c + 1) * W) // (2 * gw) - pw // 2
    return torch.stack([y, x], dim=-1).to(torch.int64)


def resolve_out_dtype(image_dtype, dtype, mean, std):
    """Output dtype: ``dtype`` if given; float32 when normalising integers; else the image's."""
    if dtype is not None:
        return dtype
    if (mean is not None or std is not None) and not image_dtype.is_floating_point:
        return torch.float32
    return image_dtype


def gather_patches_ref(image, offsets, size, *, layout="CHW", device=None, dtype=None, mean=None, std=None):
    ph, pw = size
    out_dtype = resolve_out_dtype(image.dtype, dtype, mean, std)
    mean_t = torch.as_tensor(mean, dtype=torch.float32) if mean is not None else None
    std_t = torch.as_tensor(std, dtype=torch.float32) if std is not None else None
    out = gather(image, offsets, ph, pw, layout, out_dtype, mean_t, std_t)
    return out.to(device) if device is not None else out
