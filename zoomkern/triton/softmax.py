"""Spatial softmax (forward and backward) in Triton.

A row that fits one block (<= MAX_BLOCK_N) is read once and kept in registers, ``ROWS`` rows per program.
A wider row is split into CHUNK-wide pieces, one program each (a few long rows still fill the GPU): the
forward writes per-chunk (max, sum exp, count), then combines them and writes probs and per-chunk
entropy; the backward writes per-chunk sum(q g), then combines and writes the gradient. Arithmetic runs
in the input dtype (float32 or float64). Host floats reach a kernel as float32, so the temperature and
the smoothing travel as (hi, lo) float32 pairs: float32 rows use hi (what PyTorch does with a Python
scalar), float64 rows use hi + lo (48 bits, far inside the float64 tolerance)."""

from __future__ import annotations

import math
import struct

import torch
import triton
import triton.language as tl

MAX_BLOCK_N = 2048  # widest whole-row block; wider rows are split
BLOCK_ELEMS = 4096  # ROWS * BLOCK_N: a block covers many short rows (keeps the interpreter grid small)
CHUNK = 8192  # columns per program on the split path (wide rows)


def split_f32(v: float) -> tuple[float, float]:
    """(hi, lo) with hi = float32(v) and lo = float32(v - hi)."""
    hi = _f32(v)
    return hi, _f32(v - hi)


def _f32(v: float) -> float:  # struct rounds like torch at ~1/20 the cost of a tensor (runs every launch)
    return struct.unpack("f", struct.pack("f", v))[0] if abs(v) < 3.4028235677973366e38 else v * math.inf


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
    # The whole row sits in registers (SINGLE must be True; wider rows take the split kernels).
    z, ok = _load_z(x_ptr, mask_ptr, rows, row_ok, cols0, N, stride_x, stride_m, temp, HAS_MASK)
    m = tl.max(z, axis=1)
    m = tl.where(m == float("-inf"), 0.0, m)  # padding rows of the block
    s = tl.sum(tl.exp(z - m[:, None]), axis=1)
    cnt = tl.sum(ok.to(first.dtype), axis=1)
    inv_s = 1.0 / tl.where(s > 0, s, 1.0)
    ent = _probs_store(z, ok, m, inv_s, cnt, smooth, p_ptr, rows, row_ok, cols0, N, stride_p, SMOOTH)
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
    ok = row_ok[:, None] & (cols0[None, :] < N)
    cnt = tl.zeros([ROWS], dtype=first.dtype) + N
    if SMOOTH and HAS_MASK:  # q depends on the number of valid positions
        mk = tl.load(mask_ptr + rows[:, None] * stride_m + cols0[None, :], mask=ok, other=0)
        cnt = tl.sum((ok & (mk != 0)).to(first.dtype), axis=1)
    # The whole row sits in registers (SINGLE must be True; wider rows take the split kernels).
    q, g, ok = _bwd_terms(p_ptr, gp_ptr, mask_ptr, rows, row_ok, cols0, N, stride_p, stride_gp, stride_m,
                          ge, cnt, smooth, HAS_MASK, SMOOTH)  # fmt: skip
    dot = tl.sum(q * g, axis=1)
    tl.store(gx_ptr + rows[:, None] * stride_gx + cols0[None, :], q * (g - dot[:, None]) / temp, mask=ok)


# Split rows (one program per CHUNK, so a few long rows still fill every SM; the same bytes as a two-pass
# whole-row loop): pass 1 writes per-chunk partials to a (B, n_chunks) scratch; pass 2 combines the row's
# partials in chunk order (deterministic) and writes its chunk.


@triton.jit
def _softmax_stats_kernel(x_ptr, mask_ptr, st_ptr, B, N, NC, stride_x, stride_m, t_hi, t_lo,
                          HAS_MASK: tl.constexpr, CHUNK: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """st[row, chunk] = (max z, sum exp(z - max), #valid) over one chunk."""
    rows = tl.program_id(0).to(tl.int64) + tl.arange(0, 1)
    row_ok = rows < B
    c_start = tl.program_id(1).to(tl.int64) * CHUNK
    cols0 = tl.arange(0, BLOCK_N)
    first = tl.load(x_ptr + rows * stride_x, mask=row_ok, other=0.0)
    temp = _scalar(t_hi, t_lo, first)
    s = tl.zeros([1], dtype=first.dtype)
    m, cnt = s - float("inf"), s
    for i in range(0, CHUNK, BLOCK_N):
        cols = c_start + i + cols0
        z, ok = _load_z(x_ptr, mask_ptr, rows, row_ok, cols, N, stride_x, stride_m, temp, HAS_MASK)
        m_new = tl.maximum(m, tl.max(z, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(z - m_safe[:, None]), axis=1)
        cnt += tl.sum(ok.to(first.dtype), axis=1)
        m = m_new
    at = st_ptr + (rows * NC + tl.program_id(1)) * 3
    tl.store(at, m, mask=row_ok)
    tl.store(at + 1, s, mask=row_ok)
    tl.store(at + 2, cnt, mask=row_ok)


@triton.jit
def _softmax_combine_kernel(st_ptr, rs_ptr, B, NC, CB: tl.constexpr):
    """rs[row] = (max z, 1 / sum exp(z - max), #valid) of the whole row, from its chunk stats in order.

    One program per row reads each chunk's stats once (CB at a time, online max), so the apply pass
    loads 3 numbers per chunk instead of the whole row's NC stats (which made the split path O(NC^2)).
    """
    row = tl.program_id(0).to(tl.int64)
    ch0 = tl.arange(0, CB)
    first = tl.load(st_ptr + row * NC * 3)
    m = tl.zeros([1], dtype=first.dtype) - float("inf")
    s = tl.zeros([1], dtype=first.dtype)
    cnt = tl.zeros([1], dtype=first.dtype)
    for c0 in range(0, NC, CB):
        ch = c0 + ch0
        at = st_ptr + (row * NC + ch) * 3
        ok = ch < NC
        mc = tl.load(at, mask=ok, other=float("-inf"))
        sc = tl.load(at + 1, mask=ok, other=0.0)
        cnt += tl.sum(tl.load(at + 2, mask=ok, other=0.0), axis=0)
        m_new = tl.maximum(m, tl.max(mc, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        m_old = tl.where(m == float("-inf"), m_safe, m)  # s is 0 while nothing finite was seen
        s = s * tl.exp(m_old - m_safe) + tl.sum(
            tl.where(mc == float("-inf"), 0.0, sc * tl.exp(mc - m_safe)), axis=0
        )
        m = m_new
    m = tl.where(m == float("-inf"), 0.0, m)
    one = tl.arange(0, 1)
    tl.store(rs_ptr + row * 3 + one, m)
    tl.store(rs_ptr + row * 3 + 1 + one, 1.0 / tl.where(s > 0, s, 1.0))
    tl.store(rs_ptr + row * 3 + 2 + one, cnt)


@triton.jit
def _softmax_apply_kernel(x_ptr, mask_ptr, rs_ptr, p_ptr, ent_ptr, B, N, NC, stride_x, stride_m, stride_p,
                          t_hi, t_lo, s_hi, s_lo, HAS_MASK: tl.constexpr, SMOOTH: tl.constexpr,
                          CHUNK: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """Write this chunk's probs from the row's combined stats, and its entropy part ent[row, chunk]."""
    rows = tl.program_id(0).to(tl.int64) + tl.arange(0, 1)
    row_ok = rows < B
    c_start = tl.program_id(1).to(tl.int64) * CHUNK
    cols0 = tl.arange(0, BLOCK_N)
    first = tl.load(x_ptr + rows * stride_x, mask=row_ok, other=0.0)
    temp = _scalar(t_hi, t_lo, first)
    smooth = _scalar(s_hi, s_lo, first)
    m = tl.load(rs_ptr + rows * 3, mask=row_ok, other=0.0)
    inv_s = tl.load(rs_ptr + rows * 3 + 1, mask=row_ok, other=0.0)
    cnt = tl.load(rs_ptr + rows * 3 + 2, mask=row_ok, other=0.0)
    ent = tl.zeros([1], dtype=first.dtype)
    for i in range(0, CHUNK, BLOCK_N):
        cols = c_start + i + cols0
        z, ok = _load_z(x_ptr, mask_ptr, rows, row_ok, cols, N, stride_x, stride_m, temp, HAS_MASK)
        ent += _probs_store(z, ok, m, inv_s, cnt, smooth, p_ptr, rows, row_ok, cols, N, stride_p, SMOOTH)
    tl.store(ent_ptr + rows * NC + tl.program_id(1), ent, mask=row_ok)


@triton.jit
def _softmax_bwd_split_kernel(
    p_ptr, gp_ptr, ge_ptr, mask_ptr, cnt_ptr, dot_ptr, gx_ptr, B, N, NC, stride_p, stride_gp, stride_m,
    stride_gx, t_hi, t_lo, s_hi, s_lo,
    HAS_MASK: tl.constexpr, SMOOTH: tl.constexpr, WRITE: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """WRITE=False: dot[row, chunk] = sum q g over the chunk. WRITE=True: write the grads, given the row
    totals in dot[row] (summed once per row by the host side, not once per chunk)."""
    rows = tl.program_id(0).to(tl.int64) + tl.arange(0, 1)
    row_ok = rows < B
    c_start = tl.program_id(1).to(tl.int64) * CHUNK
    cols0 = tl.arange(0, BLOCK_N)
    first = tl.load(p_ptr + rows * stride_p, mask=row_ok, other=0.0)
    ge = tl.load(ge_ptr + rows, mask=row_ok, other=0.0).to(first.dtype)
    temp = _scalar(t_hi, t_lo, first)
    smooth = _scalar(s_hi, s_lo, first)
    cnt = tl.zeros([1], dtype=first.dtype) + N
    if SMOOTH and HAS_MASK:  # counted by the host (mask.sum): q depends on it
        cnt = tl.load(cnt_ptr + rows, mask=row_ok, other=1.0).to(first.dtype)
    dot = tl.zeros([1], dtype=first.dtype)
    if WRITE:
        dot = tl.load(dot_ptr + rows, mask=row_ok, other=0.0)
    for i in range(0, CHUNK, BLOCK_N):
        cols = c_start + i + cols0
        q, g, ok = _bwd_terms(p_ptr, gp_ptr, mask_ptr, rows, row_ok, cols, N, stride_p, stride_gp, stride_m,
                              ge, cnt, smooth, HAS_MASK, SMOOTH)  # fmt: skip
        if WRITE:
            gz = q * (g - dot[:, None]) / temp
            tl.store(gx_ptr + rows[:, None] * stride_gx + cols[None, :], gz, mask=ok)
        else:
            dot += tl.sum(q * g, axis=1)
    if not WRITE:
        tl.store(dot_ptr + rows * NC + tl.program_id(1), dot, mask=row_ok)


def _split(N: int) -> tuple[int, int]:
    """(chunks per row, chunks combined per step); 0 chunks: the whole row fits one block."""
    nc = triton.cdiv(N, CHUNK) if N > MAX_BLOCK_N else 0
    return nc, min(triton.next_power_of_2(max(nc, 1)), 1024)


def softmax_fwd(x, mask, temperature: float, smoothing: float):
    """x (B, N) float32/64 contiguous, mask (B, N) bool or None -> probs (B, N), entropy (B,)."""
    B, N = x.shape
    p = torch.empty_like(x)
    ent = torch.empty(B, dtype=x.dtype, device=x.device)
    if B == 0 or N == 0:
        return p, ent.zero_()
    rows, block_n = blocks(N)
    m = mask.view(torch.uint8) if mask is not None else x  # dummy pointer when there is no mask
    nc, cb = _split(N)
    ts = (*split_f32(temperature), *split_f32(smoothing))
    if nc:
        st, ent_part = torch.empty(B, nc, 3, dtype=x.dtype, device=x.device), x.new_empty(B, nc)
        rs = torch.empty(B, 3, dtype=x.dtype, device=x.device)
        args = (B, N, nc, x.stride(0), m.stride(0))
        _softmax_stats_kernel[(B, nc)](x, m, st, *args, *ts[:2],
                                       HAS_MASK=mask is not None, CHUNK=CHUNK, BLOCK_N=block_n)  # fmt: skip
        _softmax_combine_kernel[(B,)](st, rs, B, nc, CB=cb)
        _softmax_apply_kernel[(B, nc)](
            x, m, rs, p, ent_part, *args, p.stride(0), *ts,
            HAS_MASK=mask is not None, SMOOTH=smoothing != 0, CHUNK=CHUNK, BLOCK_N=block_n,
        )  # fmt: skip
        return p, torch.sum(ent_part, dim=1, out=ent)
    _spatial_softmax_fwd_kernel[(triton.cdiv(B, rows),)](
        x, m, p, ent, B, N, x.stride(0), m.stride(0), p.stride(0), *ts,
        HAS_MASK=mask is not None, SMOOTH=smoothing != 0, SINGLE=N <= block_n, ROWS=rows, BLOCK_N=block_n,
    )  # fmt: skip
    return p, ent


def softmax_bwd(p, grad_p, grad_ent, mask, temperature: float, smoothing: float):
    """Gradient w.r.t. the logits (B, N) from the saved probs (B, N) and the output gradients."""
    B, N = p.shape
    if smoothing >= 1.0 or B == 0 or N == 0:
        return torch.zeros_like(p)
    grad_p, grad_ent = grad_p.contiguous(), grad_ent.contiguous()
    gx = torch.empty_like(p)
    rows, block_n = blocks(N)
    m = mask.view(torch.uint8) if mask is not None else p
    nc, _ = _split(N)
    ts = (*split_f32(temperature), *split_f32(smoothing))
    if nc:
        smooth_mask = mask is not None and smoothing != 0
        cnt = mask.sum(1, dtype=p.dtype) if smooth_mask else p  # no sync: read on the device
        dot = torch.empty(B, nc, dtype=p.dtype, device=p.device)
        for write in (False, True):
            _softmax_bwd_split_kernel[(B, nc)](
                p, grad_p, grad_ent, m, cnt, dot, gx, B, N, nc, p.stride(0), grad_p.stride(0), m.stride(0),
                gx.stride(0), *ts, HAS_MASK=mask is not None,
                SMOOTH=smoothing != 0, WRITE=write, CHUNK=CHUNK, BLOCK_N=block_n,
            )  # fmt: skip
            if not write:
                dot = dot.sum(1)  # the row totals, once per row (a fixed-order reduction: deterministic)
        return gx
    _spatial_softmax_bwd_kernel[(triton.cdiv(B, rows),)](
        p, grad_p, grad_ent, m, gx, B, N, p.stride(0), grad_p.stride(0), m.stride(0), gx.stride(0), *ts,
        HAS_MASK=mask is not None, SMOOTH=smoothing != 0, SINGLE=N <= block_n, ROWS=rows, BLOCK_N=block_n,
    )  # fmt: skip
    return gx
