"""Patch gather in Triton: (B, C, H, W) or (B, H, W, C) image, any strides -> (B, k, C, ph, pw).

The output is viewed as B*k*C*ph rows of pw pixels; a program covers ``ROWS`` of them. The layout is
only a choice of strides (HWC is passed as its CHW permutation), so the image is never copied. Pixels
outside the image load as 0; conversion to the output dtype happens first, then (v - mean) / std in
float32 (float64 for a float64 output), with mean/std rounded to the output dtype like the reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_BLOCK_W = 1024
BLOCK_ELEMS = 4096


@triton.jit
def _to(v, dtype: tl.constexpr):
    """Round-to-nearest-even conversion; 16-bit floats go through float32 with the rounding spelled out
    (the interpreter truncates float32 -> bfloat16 by default and mangles float64 -> 16-bit casts)."""
    if dtype == tl.bfloat16 or dtype == tl.float16:
        return v.to(tl.float32).to(dtype, fp_downcast_rounding="rtne")
    return v.to(dtype)


@triton.jit
def _gather_patches_kernel(
    img_ptr, off_ptr, mean_ptr, std_ptr, out_ptr,
    n_rows, K, C, H, W, PH, PW,
    s_b, s_c, s_h, s_w, so_b, so_k, so_2,
    HAS_MEAN: tl.constexpr, HAS_STD: tl.constexpr, NORM_F64: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)  # output row = ((b*K + m)*C + c)*PH + y
    r_ok = r < n_rows
    y = r % PH
    t = r // PH
    c = t % C
    t = t // C
    m = t % K
    b = t // K
    off = b * so_b + m * so_k
    oy = tl.load(off_ptr + off, mask=r_ok, other=0)
    ox = tl.load(off_ptr + off + so_2, mask=r_ok, other=0)
    iy = oy + y
    y_ok = r_ok & (iy >= 0) & (iy < H)
    base = b * s_b + c * s_c + iy * s_h  # int64: offsets are int64
    out_dtype = out_ptr.dtype.element_ty
    cdt = tl.float64 if NORM_F64 else tl.float32
    if HAS_MEAN:
        mu = _to(tl.load(mean_ptr + c, mask=r_ok, other=0.0), out_dtype).to(cdt)
    if HAS_STD:
        sd = _to(tl.load(std_ptr + c, mask=r_ok, other=1.0), out_dtype).to(cdt)
    cols0 = tl.arange(0, BLOCK_W)
    for w0 in range(0, PW, BLOCK_W):
        cols = w0 + cols0
        ix = ox[:, None] + cols[None, :]
        ok = y_ok[:, None] & (ix >= 0) & (ix < W) & (cols[None, :] < PW)
        v = _to(tl.load(img_ptr + base[:, None] + ix * s_w, mask=ok, other=0), out_dtype)
        if HAS_MEAN or HAS_STD:
            v = v.to(cdt)
            if HAS_MEAN:
                v = v - mu[:, None]
            if HAS_STD:
                v = v / sd[:, None]
            v = _to(v, out_dtype)
        tl.store(out_ptr + r[:, None] * PW + cols[None, :], v, mask=r_ok[:, None] & (cols[None, :] < PW))


def gather(image, offsets, ph: int, pw: int, layout: str, out_dtype, mean, std):
    """image (B, C, H, W) ("CHW") or (B, H, W, C) ("HWC"), offsets (B, k, 2) int64 -> (B, k, C, ph, pw)."""
    img = image if layout == "CHW" else image.permute(0, 3, 1, 2)
    B, C, H, W = img.shape
    k = offsets.shape[1]
    out = torch.empty(B, k, C, ph, pw, dtype=out_dtype, device=image.device)
    n_rows = B * k * C * ph
    if out.numel() == 0:
        return out
    offsets = offsets.to(image.device)
    mean_t = mean.to(image.device, torch.float32).contiguous() if mean is not None else None
    std_t = std.to(image.device, torch.float32).contiguous() if std is not None else None
    block_w = min(triton.next_power_of_2(pw), MAX_BLOCK_W)
    rows = max(1, BLOCK_ELEMS // block_w)
    # A zero-size image has no pixel to read; keep a valid pointer and strides.
    strides = img.stride() if img.numel() else (0, 0, 0, 0)
    src = img if img.numel() else out
    _gather_patches_kernel[(triton.cdiv(n_rows, rows),)](
        src, offsets, mean_t if mean_t is not None else out, std_t if std_t is not None else out, out,
        n_rows, k, C, H, W, ph, pw, *strides, *offsets.stride(),
        HAS_MEAN=mean is not None, HAS_STD=std is not None, NORM_F64=out_dtype == torch.float64,
        ROWS=rows, BLOCK_W=block_w,
    )  # fmt: skip
    return out
