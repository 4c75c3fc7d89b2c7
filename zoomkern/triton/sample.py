"""Patch sampling in Triton, from the counter-based stream of ``zoomkern/_rng.py`` (bit-identical uniforms).

Without replacement (the exponential race = Gumbel-top-k): key_j = p_j / E_j, E_j = -log1p(-v_j), -1 where
p_j <= 0 (so a row with fewer than k positive cells continues with zero cells in index order, never an
out-of-range or repeated index), -inf for columns past N; the k largest keys in descending order, lower
index first on ties. A row that fits one block keeps its keys in registers and runs k masked argmax steps.
A wider row is split over many programs (chunk maxima, per-chunk candidates above a threshold, one merge
per row; see below). When k * n_chunks is too large for the merge, one pass writes every key and a stable
device sort orders them (the reference's own algorithm).

With replacement: draw m uses the 52-bit u(row, m) (two hashes) and a float64 cdf; its index is the number
of cumulative sums <= u * total (searchsorted right), clamped to the last positive position. Wide rows:
chunk sums, then one program per draw.

Every grid is one-dimensional (row-major flattening): CUDA caps grid axes 1 and 2 at 65535, axis 0 at 2^31-1.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_BLOCK_N = 4096
BLOCK_ELEMS = 4096  # ROWS * BLOCK_N for the Gumbel kernel
BLOCK_K = 16  # draws handled together by the with-replacement kernel
CHUNK = 4096  # columns per program for wide rows without replacement
MAX_CHUNKS = 256  # chunk maxima that set the candidate threshold (the first ones; any K of them bound it)
CHUNK_R = 2048  # columns per piece for wide rows with replacement
MAX_CHUNKS_R = 8192  # the draw kernel holds every chunk sum of its row
MAX_CANDIDATES = 16384  # n_chunks * k above this: the merge would not fit one program; sort instead
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
def _counter_hash(s0, s1, rows, cols, STREAM_ADD: tl.constexpr):
    """uint32 hash of (seed, row, col, stream); rows/cols broadcastable int tensors, s0/s1 uint32 scalars."""
    c = cols.to(tl.uint32) + tl.full(cols.shape, STREAM_ADD, tl.uint32)
    h = _hash32(c)
    h = _hash32(rows.to(tl.uint32) + h)
    h = _hash32(s1 + h)
    return _hash32(s0 + h)


@triton.jit
def _exponential(s0, s1, rows, cols, dtype: tl.constexpr):
    """E = -log1p(-v), v = (h + 0.5) * 2^-32 of the Gumbel stream (float32: rounded once, clamped)."""
    h = _counter_hash(s0, s1, rows, cols, 0)
    if dtype == tl.float64:
        v = (h.to(tl.float64) + 0.5) * 2.3283064365386963e-10
    else:
        # hi and lo are exact, so their sum is the correctly rounded exact value, as in _rng.gumbel_uniform.
        hi = (h >> 8).to(tl.float32) * 5.9604644775390625e-08
        lo = ((h & 255).to(tl.float32) + 0.5) * 2.3283064365386963e-10
        v = tl.minimum(hi + lo, 0.99999994039535522461)
    # log1p without libdevice (the interpreter has none): log(w) * x / (w - 1), w = 1 + x (Goldberg);
    # accurate to a few ulp, and exactly x where w rounds to 1.
    w = 1.0 - v
    return tl.where(w == 1.0, v, -tl.log(w) * v / (1.0 - tl.where(w == 1.0, 0.0, w)))


@triton.jit
def _gumbel_keys(p_ptr, rows, row_ok, cols, N, stride_p, s0, s1):
    ok = row_ok[:, None] & (cols[None, :] < N)
    p = tl.load(p_ptr + rows[:, None] * stride_p + cols[None, :], mask=ok, other=0.0)
    e = _exponential(s0, s1, rows[:, None], cols[None, :], p.dtype)
    key = tl.where(p > 0, p / e, -1.0)
    return tl.where(ok, key, float("-inf")), ok


@triton.jit
def _draw_u(s0, s1, row, draws):
    """The 52-bit float64 uniform of the draw stream (streams 1 and 2)."""
    hi = (_counter_hash(s0, s1, row, draws, 0x9E3779B9) >> 6).to(tl.uint64)
    lo = (_counter_hash(s0, s1, row, draws, 0x3C6EF372) >> 6).to(tl.uint64)  # 2 * GOLDEN mod 2^32
    return (((hi << 26) | lo).to(tl.float64) + 0.5) * 2.220446049250313e-16


@triton.jit
def _sample_patches_kernel(
    p_ptr, seed_ptr, out_ptr, B, N, K, stride_p, stride_o, ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Rows of N <= BLOCK_N: out[b, :K] = indices of the K largest keys, largest first."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < B
    s0 = tl.load(seed_ptr).to(tl.uint32)
    s1 = tl.load(seed_ptr + 1).to(tl.uint32)
    cols0 = tl.arange(0, BLOCK_N)
    keys, ok = _gumbel_keys(p_ptr, rows, row_ok, cols0, N, stride_p, s0, s1)
    # K <= N and every column < N has a key >= -1, so a drawn key set to -inf never wins again and every
    # index is a distinct column < N, whatever the number of positive cells.
    for j in range(0, K):
        _, idx = tl.max(keys, axis=1, return_indices=True)
        tl.store(out_ptr + rows * stride_o + j, idx.to(tl.int64), mask=row_ok)
        keys = tl.where(cols0[None, :] == idx[:, None], float("-inf"), keys)


@triton.jit
def _gumbel_keys_kernel(p_ptr, seed_ptr, key_ptr, N, NC, stride_p, CHUNK: tl.constexpr):
    """keys[b, :] for the sort path; program = (row, chunk) flattened."""
    pid = tl.program_id(0).to(tl.int64)
    row = pid // NC
    c = pid % NC
    s0 = tl.load(seed_ptr).to(tl.uint32)
    s1 = tl.load(seed_ptr + 1).to(tl.uint32)
    cols = c * CHUNK + tl.arange(0, CHUNK)
    rows = row + tl.arange(0, 1)
    keys, ok = _gumbel_keys(p_ptr, rows, rows >= 0, cols, N, stride_p, s0, s1)
    tl.store(key_ptr + rows[:, None] * N + cols[None, :], keys, mask=ok)


# Wide rows without replacement, three launches over CHUNK-wide pieces (B * n_chunks programs):
# 1. cmax[b, c] = the largest key of chunk c.
# 2. thr = the K-th largest of the row's first <= MAX_CHUNKS chunk maxima: K chunks hold a key >= thr, so
#    every top-K key is >= thr. Each chunk keeps its top keys >= thr (at most K, in draw order) as
#    candidates in a (B, n_chunks * K) scratch, -inf in unused slots; usually only a few per chunk.
#    Every valid column has a key >= -1 > -inf, so the row holds at least K candidates.
# 3. One program per row draws the K best candidates. Equal keys sit in ascending index order in the
#    scratch (chunks in order, draw order within a chunk), and argmax takes the first: lower index first.


@triton.jit
def _gumbel_chunk_kernel(p_ptr, seed_ptr, cmax_ptr, ck_ptr, ci_ptr, N, K, NC, stride_p,
                         CANDIDATES: tl.constexpr, CHUNK: tl.constexpr, K_P: tl.constexpr,
                         NC_P: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    row = pid // NC
    c = pid % NC
    s0 = tl.load(seed_ptr).to(tl.uint32)
    s1 = tl.load(seed_ptr + 1).to(tl.uint32)
    cols = c * CHUNK + tl.arange(0, CHUNK)
    rows = row + tl.arange(0, 1)
    keys, ok = _gumbel_keys(p_ptr, rows, rows >= 0, cols, N, stride_p, s0, s1)
    keys = tl.reshape(keys, [CHUNK])
    if not CANDIDATES:
        tl.store(cmax_ptr + row * NC + c, tl.max(keys, axis=0))
    else:
        ch = tl.arange(0, NC_P)
        cm = tl.load(cmax_ptr + row * NC + ch, mask=ch < NC, other=float("-inf"))
        n_ge = tl.sum((cm[None, :] >= cm[:, None]).to(tl.int32), axis=1)
        thr = tl.max(tl.where(n_ge >= K, cm, float("-inf")), axis=0)
        slot = tl.arange(0, K_P)
        ck = tl.zeros([K_P], dtype=keys.dtype) - float("inf")
        ci = tl.zeros([K_P], dtype=tl.int64) + N
        best, bi = tl.max(keys, axis=0, return_indices=True)
        j = 0
        while (j < K) & (best >= thr) & (best > float("-inf")):
            ck = tl.where(slot == j, best, ck)
            ci = tl.where(slot == j, c * CHUNK + bi, ci)
            keys = tl.where(tl.arange(0, CHUNK) == bi, float("-inf"), keys)
            best, bi = tl.max(keys, axis=0, return_indices=True)
            j += 1
        at = (row * NC + c) * K + slot
        tl.store(ck_ptr + at, ck, mask=slot < K)
        tl.store(ci_ptr + at, ci, mask=slot < K)


@triton.jit
def _gumbel_merge_kernel(ck_ptr, ci_ptr, out_ptr, N, K, M, stride_o, M_P: tl.constexpr, K_P: tl.constexpr):
    """out[b, :K] = indices of the K best of the row's M candidates (keys descending, first slot on ties)."""
    row = tl.program_id(0).to(tl.int64)
    slot = tl.arange(0, M_P)
    keys = tl.load(ck_ptr + row * M + slot, mask=slot < M, other=float("-inf"))
    draw = tl.arange(0, K_P)
    won = tl.zeros([K_P], dtype=tl.int32)
    for j in range(0, K):  # the winning slots stay in registers: no memory round trip per draw
        _, at = tl.max(keys, axis=0, return_indices=True)
        won = tl.where(draw == j, at, won)
        keys = tl.where(slot == at, float("-inf"), keys)
    idx = tl.load(ci_ptr + row * M + won, mask=draw < K, other=0)
    # At least K real candidates exist (see above); the clamp only guards the gather that follows.
    tl.store(out_ptr + row * stride_o + draw, tl.minimum(idx, N - 1), mask=draw < K)


@triton.jit
def _sample_replace_kernel(p_ptr, seed_ptr, out_ptr, N, K, stride_p, stride_o,
                           BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """I.i.d. draws (N >= 1): out[b, m] = #{i : cdf_i <= u_m * total}, clamped to the last positive cell."""
    row = tl.program_id(0).to(tl.int64)
    s0 = tl.load(seed_ptr).to(tl.uint32)
    s1 = tl.load(seed_ptr + 1).to(tl.uint32)
    cols0 = tl.arange(0, BLOCK_N)
    total = tl.zeros([1], dtype=tl.float64)
    last = tl.zeros([1], dtype=tl.int64) - 1
    for c0 in range(0, N, BLOCK_N):
        cols = c0 + cols0
        p = tl.load(p_ptr + row * stride_p + cols, mask=cols < N, other=0.0)
        total = tl.max(total + tl.cumsum(p.to(tl.float64), axis=0), axis=0, keep_dims=True)  # non-decreasing
        last = tl.maximum(last, tl.max(tl.where(p > 0, cols, -1), axis=0, keep_dims=True).to(tl.int64))
    last = tl.where(last < 0, N - 1, last)  # no positive position (invalid input): as the reference
    for k0 in range(0, K, BLOCK_K):
        draws = k0 + tl.arange(0, BLOCK_K)
        t = _draw_u(s0, s1, row, draws) * total
        count = tl.zeros([BLOCK_K], dtype=tl.int64)
        carry = tl.zeros([1], dtype=tl.float64)
        for c0 in range(0, N, BLOCK_N):
            cols = c0 + cols0
            p = tl.load(p_ptr + row * stride_p + cols, mask=cols < N, other=0.0)
            cdf = carry + tl.cumsum(p.to(tl.float64), axis=0)
            carry = tl.max(cdf, axis=0, keep_dims=True)
            le = (cdf[None, :] <= t[:, None]) & (cols[None, :] < N)
            count += tl.sum(le.to(tl.int64), axis=1)
        tl.store(out_ptr + row * stride_o + draws, tl.minimum(count, last), mask=draws < K)


# Wide rows with replacement: chunk sums (and last positive positions) per CHUNK_R-wide piece, then one
# program per draw: the cdf is chunk prefix + in-chunk cumsum, the carry being each chunk's max cumsum
# (adding non-negative terms never decreases a float), so it is non-decreasing across chunk boundaries
# and "the draw's chunk, then its place inside" counts exactly the cdf values <= u * total.


@triton.jit
def _replace_chunk_kernel(p_ptr, csum_ptr, clast_ptr, N, NC, stride_p, CHUNK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    row = pid // NC
    c = pid % NC
    cols = c * CHUNK + tl.arange(0, CHUNK)
    p = tl.load(p_ptr + row * stride_p + cols, mask=cols < N, other=0.0)
    tl.store(csum_ptr + row * NC + c, tl.max(tl.cumsum(p.to(tl.float64), axis=0), axis=0))
    tl.store(clast_ptr + row * NC + c, tl.max(tl.where(p > 0, cols, -1), axis=0))


@triton.jit
def _replace_draw_kernel(p_ptr, seed_ptr, csum_ptr, clast_ptr, out_ptr, N, NC, K, stride_p, stride_o,
                         CHUNK: tl.constexpr, NC_P: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    row = pid // K
    d = pid % K
    s0 = tl.load(seed_ptr).to(tl.uint32)
    s1 = tl.load(seed_ptr + 1).to(tl.uint32)
    ch = tl.arange(0, NC_P)
    cs = tl.load(csum_ptr + row * NC + ch, mask=ch < NC, other=0.0)
    ends = tl.cumsum(cs, axis=0)  # cdf at each chunk's end
    last = tl.max(tl.load(clast_ptr + row * NC + ch, mask=ch < NC, other=-1), axis=0)
    last = tl.where(last < 0, N - 1, last)  # no positive position (invalid input): as the reference
    u = _draw_u(s0, s1, row, d + tl.arange(0, 1))
    t = tl.max(u, axis=0) * tl.max(tl.where(ch < NC, ends, 0.0), axis=0)
    c = tl.sum(((ends <= t) & (ch < NC)).to(tl.int32), axis=0)  # the draw's chunk (NC: past the end)
    start = tl.max(tl.where(ch < c, ends, 0.0), axis=0)
    cols = c.to(tl.int64) * CHUNK + tl.arange(0, CHUNK)
    p = tl.load(p_ptr + row * stride_p + cols, mask=(cols < N) & (c < NC), other=0.0)
    le = ((start + tl.cumsum(p.to(tl.float64), axis=0)) <= t) & (cols < N)
    idx = c.to(tl.int64) * CHUNK + tl.sum(le.to(tl.int64), axis=0)
    tl.store(out_ptr + row * stride_o + d, tl.minimum(idx, last.to(tl.int64)))


def _sample_wide(probs, k: int, seed, out):
    """Without replacement, N > MAX_BLOCK_N: chunk candidates + merge, or keys + a stable sort."""
    B, N = probs.shape
    nc = triton.cdiv(N, CHUNK)
    if nc * k > MAX_CANDIDATES:
        keys = torch.empty(B, N, dtype=probs.dtype, device=probs.device)
        _gumbel_keys_kernel[(B * nc,)](probs, seed, keys, N, nc, probs.stride(0), CHUNK=CHUNK)
        out.copy_(torch.sort(keys, dim=1, descending=True, stable=True).indices[:, :k])
        return out
    m_p = triton.next_power_of_2(nc * k)
    nc_p = min(triton.next_power_of_2(nc), MAX_CHUNKS)
    cmax = torch.empty(B, nc, dtype=probs.dtype, device=probs.device)
    ck = torch.empty(B, nc * k, dtype=probs.dtype, device=probs.device)
    ci = torch.empty(B, nc * k, dtype=torch.int64, device=probs.device)
    for cands in (False, True):
        _gumbel_chunk_kernel[(B * nc,)](
            probs, seed, cmax, ck, ci, N, k, nc, probs.stride(0),
            CANDIDATES=cands, CHUNK=CHUNK, K_P=triton.next_power_of_2(k), NC_P=nc_p, num_warps=8,
        )  # fmt: skip
    _gumbel_merge_kernel[(B,)](
        ck, ci, out, N, k, nc * k, out.stride(0), M_P=m_p, K_P=triton.next_power_of_2(k), num_warps=8
    )
    return out


def sample(probs, k: int, replace: bool, seed):
    """probs (B, N) float32/64 contiguous, seed int64 (2,) on probs' device -> indices (B, k) int64.

    Without replacement k <= N (positive cells first; zero cells follow in index order when a row has
    fewer than k); with replacement N >= 1.
    """
    B, N = probs.shape
    if k > 0 and (N == 0 or (not replace and k > N)):
        raise ValueError(f"sample: k = {k} draws from N = {N} positions (replace={replace})")
    out = torch.empty(B, k, dtype=torch.int64, device=probs.device)
    if B == 0 or k == 0:
        return out
    block_n = min(triton.next_power_of_2(max(N, 1)), MAX_BLOCK_N)
    if replace and N > CHUNK_R and triton.cdiv(N, CHUNK_R) <= MAX_CHUNKS_R:
        nc = triton.cdiv(N, CHUNK_R)
        csum = torch.empty(B, nc, dtype=torch.float64, device=probs.device)
        clast = torch.empty(B, nc, dtype=torch.int64, device=probs.device)
        _replace_chunk_kernel[(B * nc,)](probs, csum, clast, N, nc, probs.stride(0), CHUNK=CHUNK_R)
        _replace_draw_kernel[(B * k,)](
            probs, seed, csum, clast, out, N, nc, k, probs.stride(0), out.stride(0),
            CHUNK=CHUNK_R, NC_P=triton.next_power_of_2(nc),
        )  # fmt: skip
        return out
    if replace:
        bn = min(block_n, 1024)  # the (BLOCK_K, BLOCK_N) comparison tile stays small
        _sample_replace_kernel[(B,)](
            probs, seed, out, N, k, probs.stride(0), out.stride(0), BLOCK_K=BLOCK_K, BLOCK_N=bn
        )
        return out
    if N > block_n:
        return _sample_wide(probs, k, seed, out)
    rows = max(1, BLOCK_ELEMS // block_n)
    _sample_patches_kernel[(triton.cdiv(B, rows),)](
        probs, seed, out, B, N, k, probs.stride(0), out.stride(0), ROWS=rows, BLOCK_N=block_n
    )
    return out
