"""Patch sampling in Triton, from the counter-based stream of ``zoomkern/_rng.py`` (bit-identical uniforms).

Without replacement (Gumbel-top-k): key_j = log p_j - log(-log u_j), -inf where p_j <= 0; the k largest
keys in descending order. A row that fits one block keeps its keys in registers and runs k masked argmax
steps. A wider row is swept k times; each sweep recomputes the keys (cheaper than a scratch buffer and
needs no barrier) and takes the largest key that ranks strictly after the previous draw in the order
(key descending, index ascending), so ties break exactly like the single-block path.

With replacement: draw m uses u(row, m, stream 1); its index is the number of cumulative sums <= u * total
(searchsorted right), clamped to the last positive position.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_BLOCK_N = 4096
BLOCK_ELEMS = 4096  # ROWS * BLOCK_N for the Gumbel kernel
BLOCK_K = 16  # draws handled together by the with-replacement kernel
GOLDEN = 0x9E3779B9


@triton.jit
def _hash32(x):
    """lowbias32 on uint32 (wrapping multiplies)."""
    x = x ^ (x >> 16)
    x = x * tl.full(x.shape, 0x7FEB352D, tl.uint32)
    x = x ^ (x >> 15)
    x = x * tl.full(x.shape, 0x846CA68B, tl.uint32)
    return x ^ (x >> 16)


@triton.jit
def _uniform(s0, s1, rows, cols, STREAM_ADD: tl.constexpr, dtype: tl.constexpr):
    """u(row, col) in (0, 1) in dtype; rows/cols broadcastable int tensors, s0/s1 uint32 scalars."""
    c = cols.to(tl.uint32) + tl.full(cols.shape, STREAM_ADD, tl.uint32)
    h = _hash32(c)
    h = _hash32(rows.to(tl.uint32) + h)
    h = _hash32(s1 + h)
    h = _hash32(s0 + h)
    # (h >> 8) < 2**24 converts exactly; the + 0.5 rounds once, as the float64 reference's cast does.
    return ((h >> 8).to(dtype) + 0.5) * 5.9604644775390625e-08


@triton.jit
def _gumbel_keys(p_ptr, rows, row_ok, cols, N, stride_p, s0, s1):
    ok = row_ok[:, None] & (cols[None, :] < N)
    p = tl.load(p_ptr + rows[:, None] * stride_p + cols[None, :], mask=ok, other=0.0)
    u = _uniform(s0, s1, rows[:, None], cols[None, :], 0, p.dtype)
    pos = ok & (p > 0)
    key = tl.log(tl.where(pos, p, 1.0)) - tl.log(-tl.log(u))
    return tl.where(pos, key, float("-inf")), ok


@triton.jit
def _sample_patches_kernel(
    p_ptr, seed_ptr, out_ptr, B, N, K, stride_p, stride_o,
    SINGLE: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Gumbel-top-k without replacement: out[b, :K] = indices of the K largest keys, largest first."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < B
    s0 = tl.load(seed_ptr).to(tl.uint32)
    s1 = tl.load(seed_ptr + 1).to(tl.uint32)
    cols0 = tl.arange(0, BLOCK_N)
    if SINGLE:
        keys, ok = _gumbel_keys(p_ptr, rows, row_ok, cols0, N, stride_p, s0, s1)
        # The op layer guarantees K <= #positive positions, so a drawn key set to -inf never wins again.
        for j in range(0, K):
            _, idx = tl.max(keys, axis=1, return_indices=True)
            tl.store(out_ptr + rows * stride_o + j, idx.to(tl.int64), mask=row_ok)
            keys = tl.where(cols0[None, :] == idx[:, None], float("-inf"), keys)
    else:
        first = tl.load(p_ptr + rows * stride_p, mask=row_ok, other=0.0)
        prev_key = tl.zeros([ROWS], dtype=first.dtype) + float("inf")
        prev_idx = tl.zeros([ROWS], dtype=tl.int64) - 1
        for j in range(0, K):
            best = tl.zeros([ROWS], dtype=first.dtype) - float("inf")
            best_idx = tl.zeros([ROWS], dtype=tl.int64) + N  # "nothing yet": ranks after every column
            for c0 in range(0, N, BLOCK_N):
                cols = c0 + cols0
                keys, ok = _gumbel_keys(p_ptr, rows, row_ok, cols, N, stride_p, s0, s1)
                pk = prev_key[:, None]
                after = (keys < pk) | ((keys == pk) & (cols[None, :] > prev_idx[:, None]))
                cand = ok & after
                bk, bi = tl.max(tl.where(cand, keys, float("-inf")), axis=1, return_indices=True)
                any_c = tl.max(cand.to(tl.int32), axis=1) > 0
                # A block wins when its best ranks ahead of the running best (earlier blocks win ties).
                take = any_c & ((bk > best) | (best_idx == N))
                best = tl.where(take, bk, best)
                best_idx = tl.where(take, c0 + bi.to(tl.int64), best_idx)
            tl.store(out_ptr + rows * stride_o + j, best_idx, mask=row_ok)
            prev_key = best
            prev_idx = best_idx


@triton.jit
def _sample_replace_kernel(p_ptr, seed_ptr, out_ptr, N, K, stride_p, stride_o,
                           BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """I.i.d. draws: out[b, m] = #{i : cdf_i <= u_m * total}, clamped to the last positive position."""
    row = tl.program_id(0).to(tl.int64)
    s0 = tl.load(seed_ptr).to(tl.uint32)
    s1 = tl.load(seed_ptr + 1).to(tl.uint32)
    cols0 = tl.arange(0, BLOCK_N)
    first = tl.load(p_ptr + row * stride_p)
    total = tl.zeros([1], dtype=first.dtype)
    last = tl.zeros([1], dtype=tl.int64) - 1
    for c0 in range(0, N, BLOCK_N):
        cols = c0 + cols0
        p = tl.load(p_ptr + row * stride_p + cols, mask=cols < N, other=0.0)
        total = tl.max(total + tl.cumsum(p, axis=0), axis=0, keep_dims=True)  # cdf is non-decreasing
        last = tl.maximum(last, tl.max(tl.where(p > 0, cols, -1), axis=0, keep_dims=True).to(tl.int64))
    last = tl.where(last < 0, N - 1, last)  # no positive position (invalid input): as the reference
    for k0 in range(0, K, BLOCK_K):
        draws = k0 + tl.arange(0, BLOCK_K)
        u = _uniform(s0, s1, row, draws, 0x9E3779B9, first.dtype)
        t = u * total
        count = tl.zeros([BLOCK_K], dtype=tl.int64)
        carry = tl.zeros([1], dtype=first.dtype)
        for c0 in range(0, N, BLOCK_N):
            cols = c0 + cols0
            p = tl.load(p_ptr + row * stride_p + cols, mask=cols < N, other=0.0)
            cdf = carry + tl.cumsum(p, axis=0)
            carry = tl.max(cdf, axis=0, keep_dims=True)
            le = (cdf[None, :] <= t[:, None]) & (cols[None, :] < N)
            count += tl.sum(le.to(tl.int64), axis=1)
        tl.store(out_ptr + row * stride_o + draws, tl.minimum(count, last), mask=draws < K)


def sample(probs, k: int, replace: bool, seed):
    """probs (B, N) float32/64 contiguous, seed int64 (2,) on probs' device -> indices (B, k) int64."""
    B, N = probs.shape
    out = torch.empty(B, k, dtype=torch.int64, device=probs.device)
    if B == 0 or k == 0:
        return out
    block_n = min(triton.next_power_of_2(max(N, 1)), MAX_BLOCK_N)
    if replace:
        bn = min(block_n, 1024)  # the (BLOCK_K, BLOCK_N) comparison tile stays small
        _sample_replace_kernel[(B,)](
            probs, seed, out, N, k, probs.stride(0), out.stride(0), BLOCK_K=BLOCK_K, BLOCK_N=bn
        )
        return out
    rows = max(1, BLOCK_ELEMS // block_n)
    _sample_patches_kernel[(triton.cdiv(B, rows),)](
        probs,
        seed,
        out,
        B,
        N,
        k,
        probs.stride(0),
        out.stride(0),
        SINGLE=N <= block_n,
        ROWS=rows,
        BLOCK_N=block_n,
    )
    return out
