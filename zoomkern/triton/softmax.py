"""Spatial softmax (forward and backward) in Triton.

Each program owns ``ROWS`` rows of ``x`` (B, N) and walks the columns in blocks of ``BLOCK_N``. When a
row fits in one block (``SINGLE``) it is read once and kept in registers; otherwise the forward reads it
twice (online max/sum/count, then write probs and accumulate the entropy) and the backward three times
at most. Arithmetic runs in the input dtype (float32 or float64).

Host floats reach a kernel as float32, so the temperature and the smoothing travel as (hi, lo) float32
pairs: float32 rows use hi (what PyTorch does with a Python scalar), float64 rows use hi + lo (48 bits,
far inside the float64 tolerance).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_BLOCK_N = 2048  # widest column block; wider rows loop
BLOCK_ELEMS = 4096  # ROWS * BLOCK_N: a block covers many short rows (keeps the interpreter grid small)


def split_f32(v: float) -> tuple[float, float]:
    """(hi, lo) with hi = float32(v) and lo = float32(v - hi)."""
    hi = float(torch.tensor(v, dtype=torch.float32))
    return hi, float(torch.tensor(v - hi, dtype=torch.float32))


def blocks(n: int) -> tuple[int, int]:
    """(ROWS, BLOCK_N) for rows of n elements."""
    block_n = min(triton.next_power_of_2(max(n, 1)), MAX_BLOCK_N)
    return max(1, BLOCK_ELEMS // block_n), block_n


@triton.jit
def _scalar(hi, lo, ref):
    """A host scalar as a (ROWS, 1) column in ref's dtype: hi for float32, hi + lo for float64."""
    z = tl.zeros_like(ref)  # the interpreter passes floats as Python floats (no .to), so add to a tensor
    if ref.dtype == tl.float64:
        return ((z + hi) + lo)[:, None]
    return (z + hi)[:, None]


@triton.jit
def _load_z(x_ptr, mask_ptr, rows, row_ok, cols, N, stride_x, stride_m, temp, HAS_MASK: tl.constexpr):
    """z = x / T on valid positions, -inf elsewhere; and the validity tile."""
    ok = row_ok[:, None] & (cols[None, :] < N)
    if HAS_MASK:
        ok = ok & (tl.load(mask_ptr + rows[:, None] * stride_m + cols[None, :], mask=ok, other=0) != 0)
    x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=ok, other=0.0)
    return tl.where(ok, x / temp, float("-inf")), ok


@triton.jit
def _probs_store(z, ok, m, inv_s, cnt, smooth, p_ptr, rows, row_ok, cols, N, stride_p, SMOOTH: tl.constexpr):
    """Write the probs of one tile; return its -sum p log p per row."""
    p = tl.exp(z - m[:, None]) * inv_s[:, None]
    if SMOOTH:
        p = tl.where(ok, (1.0 - smooth) * p + smooth / tl.maximum(cnt, 1.0)[:, None], 0.0)
    p = tl.where(ok, p, 0.0)
    tl.store(p_ptr + rows[:, None] * stride_p + cols[None, :], p, mask=row_ok[:, None] & (cols[None, :] < N))
    return -tl.sum(tl.where(p > 0, p * tl.log(tl.where(p > 0, p, 1.0)), 0.0), axis=1)


@triton.jit
def _spatial_softmax_fwd_kernel(
    x_ptr, mask_ptr, p_ptr, ent_ptr, B, N, stride_x, stride_m, stride_p,
    t_hi, t_lo, s_hi, s_lo,
    HAS_MASK: tl.constexpr, SMOOTH: tl.constexpr, SINGLE: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < B
    cols0 = tl.arange(0, BLOCK_N)
    first = tl.load(x_ptr + rows * stride_x, mask=row_ok, other=0.0)
    temp = _scalar(t_hi, t_lo, first)
    smooth = _scalar(s_hi, s_lo, first)
    zero = tl.zeros([ROWS], dtype=first.dtype)
    if SINGLE:  # the whole row sits in registers: one read
        z, ok = _load_z(x_ptr, mask_ptr, rows, row_ok, cols0, N, stride_x, stride_m, temp, HAS_MASK)
        m = tl.max(z, axis=1)
        m = tl.where(m == float("-inf"), 0.0, m)  # padding rows of the block
        s = tl.sum(tl.exp(z - m[:, None]), axis=1)
        cnt = tl.sum(ok.to(first.dtype), axis=1)
        ent = _probs_store(
            z,
            ok,
            m,
            1.0 / tl.where(s > 0, s, 1.0),
            cnt,
            smooth,
            p_ptr,
            rows,
            row_ok,
            cols0,
            N,
            stride_p,
            SMOOTH,
        )
    else:
        m = zero - float("inf")
        s = zero
        cnt = zero
        # Pass 1: online max, rescaled sum of exponentials, count of valid positions.
        for c0 in range(0, N, BLOCK_N):
            z, ok = _load_z(x_ptr, mask_ptr, rows, row_ok, c0 + cols0, N, stride_x, stride_m, temp, HAS_MASK)
            m_new = tl.maximum(m, tl.max(z, axis=1))
            # A row with nothing valid yet has m_new = -inf; shift by 0 there to avoid inf - inf.
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(z - m_safe[:, None]), axis=1)
            cnt += tl.sum(ok.to(first.dtype), axis=1)
            m = m_new
        m = tl.where(m == float("-inf"), 0.0, m)
        inv_s = 1.0 / tl.where(s > 0, s, 1.0)  # s = 0 only on padding rows
        ent = zero
        # Pass 2: write probs, accumulate the entropy.
        for c0 in range(0, N, BLOCK_N):
            cols = c0 + cols0
            z, ok = _load_z(x_ptr, mask_ptr, rows, row_ok, cols, N, stride_x, stride_m, temp, HAS_MASK)
            ent += _probs_store(z, ok, m, inv_s, cnt, smooth, p_ptr, rows, row_ok, cols, N, stride_p, SMOOTH)
    tl.store(ent_ptr + rows, ent, mask=row_ok)


@triton.jit
def _bwd_terms(p_ptr, gp_ptr, mask_ptr, rows, row_ok, cols, N, stride_p, stride_gp, stride_m, ge, cnt, smooth,
               HAS_MASK: tl.constexpr, SMOOTH: tl.constexpr):  # fmt: skip
    """(q, g, in_tile) of one tile: q the unsmoothed probs, g the gradient reaching them."""
    ok = row_ok[:, None] & (cols[None, :] < N)
    p = tl.load(p_ptr + rows[:, None] * stride_p + cols[None, :], mask=ok, other=0.0)
    gp = tl.load(gp_ptr + rows[:, None] * stride_gp + cols[None, :], mask=ok, other=0.0)
    logp = tl.where(p > 0, tl.log(tl.where(p > 0, p, 1.0)), 0.0)
    g = gp.to(p.dtype) - ge[:, None] * (logp + 1.0)
    q = p
    if SMOOTH:
        q = tl.maximum((p - smooth / tl.maximum(cnt, 1.0)[:, None]) / (1.0 - smooth), 0.0)
        if HAS_MASK:
            mk = tl.load(mask_ptr + rows[:, None] * stride_m + cols[None, :], mask=ok, other=0)
            q = tl.where(mk != 0, q, 0.0)
        g = g * (1.0 - smooth)
    return q, g, ok


@triton.jit
def _spatial_softmax_bwd_kernel(
    p_ptr, gp_ptr, ge_ptr, mask_ptr, gx_ptr, B, N, stride_p, stride_gp, stride_m, stride_gx,
    t_hi, t_lo, s_hi, s_lo,
    HAS_MASK: tl.constexpr, SMOOTH: tl.constexpr, SINGLE: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < B
    cols0 = tl.arange(0, BLOCK_N)
    first = tl.load(p_ptr + rows * stride_p, mask=row_ok, other=0.0)
    ge = tl.load(ge_ptr + rows, mask=row_ok, other=0.0).to(first.dtype)
    temp = _scalar(t_hi, t_lo, first)
    smooth = _scalar(s_hi, s_lo, first)
    zero = tl.zeros([ROWS], dtype=first.dtype)
    cnt = zero + N
    if SMOOTH and HAS_MASK:
        # q depends on the number of valid positions, so count them first.
        cnt = zero
        for c0 in range(0, N, BLOCK_N):
            cols = c0 + cols0
            ok = row_ok[:, None] & (cols[None, :] < N)
            mk = tl.load(mask_ptr + rows[:, None] * stride_m + cols[None, :], mask=ok, other=0)
            cnt += tl.sum((ok & (mk != 0)).to(first.dtype), axis=1)
    if SINGLE:
        q, g, ok = _bwd_terms(p_ptr, gp_ptr, mask_ptr, rows, row_ok, cols0, N, stride_p, stride_gp, stride_m,
                              ge, cnt, smooth, HAS_MASK, SMOOTH)  # fmt: skip
        dot = tl.sum(q * g, axis=1)
        gz = q * (g - dot[:, None]) / temp
        tl.store(gx_ptr + rows[:, None] * stride_gx + cols0[None, :], gz, mask=ok)
    else:
        dot = zero
        for c0 in range(0, N, BLOCK_N):
            q, g, ok = _bwd_terms(p_ptr, gp_ptr, mask_ptr, rows, row_ok, c0 + cols0, N, stride_p, stride_gp,
                                  stride_m, ge, cnt, smooth, HAS_MASK, SMOOTH)  # fmt: skip
            dot += tl.sum(q * g, axis=1)
        for c0 in range(0, N, BLOCK_N):
            cols = c0 + cols0
            q, g, ok = _bwd_terms(p_ptr, gp_ptr, mask_ptr, rows, row_ok, cols, N, stride_p, stride_gp,
                                  stride_m, ge, cnt, smooth, HAS_MASK, SMOOTH)  # fmt: skip
            gz = q * (g - dot[:, None]) / temp
            tl.store(gx_ptr + rows[:, None] * stride_gx + cols[None, :], gz, mask=ok)


def softmax_fwd(x, mask, temperature: float, smoothing: float):
    """x (B, N) float32/64 contiguous, mask (B, N) bool or None -> probs (B, N), entropy (B,)."""
    B, N = x.shape
    p = torch.empty_like(x)
    ent = torch.empty(B, dtype=x.dtype, device=x.device)
    if B == 0 or N == 0:
        return p, ent.zero_()
    rows, block_n = blocks(N)
    m = mask.view(torch.uint8) if mask is not None else x  # dummy pointer when there is no mask
    _spatial_softmax_fwd_kernel[(triton.cdiv(B, rows),)](
        x, m, p, ent, B, N, x.stride(0), m.stride(0), p.stride(0),
        *split_f32(temperature), *split_f32(smoothing),
        HAS_MASK=mask is not None, SMOOTH=smoothing != 0, SINGLE=N <= block_n, ROWS=rows, BLOCK_N=block_n,
    )  # fmt: skip
    return p, ent


def softmax_bwd(p, grad_p, grad_ent, mask, temperature: float, smoothing: float):
    """Gradient w.r.t. the logits (B, N) from the saved probs (B, N) and the output gradients."""
    B, N = p.shape
    if smoothing >= 1.0 or B == 0 or N == 0:
        return torch.zeros_like(p)
    grad_p = grad_p.contiguous()
    grad_ent = grad_ent.contiguous()
    gx = torch.empty_like(p)
    rows, block_n = blocks(N)
    m = mask.view(torch.uint8) if mask is not None else p
    _spatial_softmax_bwd_kernel[(triton.cdiv(B, rows),)](
        p, grad_p, grad_ent, m, gx, B, N, p.stride(0), grad_p.stride(0), m.stride(0), gx.stride(0),
        *split_f32(temperature), *split_f32(smoothing),
        HAS_MASK=mask is not None, SMOOTH=smoothing != 0, SINGLE=N <= block_n, ROWS=rows, BLOCK_N=block_n,
    )  # fmt: skip
    return gx
