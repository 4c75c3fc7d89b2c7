"""The C++ sampling kernel (csrc/sample) against reference.sample, under both CPU capability builds.

Same uniforms as the reference, so the same draws: bit for bit with replacement (the float64 cdf is summed in
torch.cumsum's order) and in float64 without; float32 keys may differ by an ulp (Sleef vs libm log1p), which
can reorder a near-tie. Rows split over threads give the same draws as whole rows.
"""

import pytest
import torch

pytest.importorskip("zoomkern._C", reason="zoomkern._C not built (ZOOMKERN_NO_EXT=1 or no compiler)")

from tests._cpu_helpers import _probs, _seed, _with_threads  # noqa: E402
from zoomkern import reference as R  # noqa: E402

OPS = torch.ops.zoomkern_C
pytestmark = pytest.mark.usefixtures("each_cpu_capability")


def _check_rows(idx, ref, dtype):
    rows_equal = (idx == ref).all(1)
    if dtype == torch.float64:
        assert rows_equal.all(), f"rows differ: {(~rows_equal).nonzero().flatten().tolist()}"
    else:
        assert rows_equal.double().mean() >= 0.99, f"{(~rows_equal).sum()} / {len(idx)} rows differ"


# Shapes around the 8-lane blocks and the heap filling phase (k cells), one row, k = N.
@pytest.mark.parametrize(
    "B,N,k", [(1, 1, 1), (1, 97, 5), (64, 781, 10), (16, 1823, 40), (8, 97, 60), (3, 9, 9), (5, 17, 16)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_without_replacement_matches_reference(B, N, k, dtype):
    probs = _probs(B, N, dtype, zero_frac=0.3 if 2 * k < N else 0.0)
    seed = _seed()
    idx = OPS.sample(probs, k, False, seed)
    assert idx.dtype == torch.int64 and idx.shape == (B, k)
    _check_rows(idx, R.sample(probs, k, False, seed), dtype)
    assert (idx.sort(1).values.diff(dim=1) != 0).all()  # distinct
    assert (probs.gather(1, idx) > 0).all()  # never a zero-probability position


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_without_replacement_many_rows(dtype):
    # Many rows make near-ties likely, so an off-by-one-bit uniform (e.g. a wrong shift) shows up here.
    probs = _probs(3000, 781, dtype)
    _check_rows(OPS.sample(probs, 16, False, _seed(7, 9)), R.sample(probs, 16, False, _seed(7, 9)), dtype)


def test_sample_without_replacement_fewer_positive_cells_than_k():
    # The op refuses this; the kernel still answers like the reference: positives, then zero cells in order.
    p = torch.zeros(2, 40)
    p[:, [30, 3, 17]] = torch.tensor([0.5, 0.3, 0.2])
    assert torch.equal(OPS.sample(p, 10, False, _seed()), R.sample(p, 10, False, _seed()))


@pytest.mark.parametrize("B,N,k", [(1, 1, 3), (1, 97, 5), (64, 781, 10), (16, 1823, 40), (5, 3, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_with_replacement_matches_reference(B, N, k, dtype):
    probs = _probs(B, N, dtype)
    probs[:, max(1, N - 3) :] = 0  # trailing zeros exercise the clamp onto the last positive position
    seed = _seed(99, 2**31 - 2)
    idx = OPS.sample(probs, k, True, seed)
    # The cdf is accumulated like torch.cumsum and u * total is one IEEE multiply: bit for bit.
    assert torch.equal(idx, R.sample(probs, k, True, seed)), "draws differ"
    assert (probs.gather(1, idx) > 0).all()


@pytest.mark.parametrize("B,N", [(1, 40000), (3, 20001)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_split_over_threads_give_the_same_draws(B, N, dtype):
    # Fewer rows than threads: each row is cut into pieces whose top-k lists are merged.
    probs = _probs(B, N, dtype, zero_frac=0.5)

    def run():
        return [OPS.sample(probs, 25, False, _seed(3, 4)), OPS.sample(probs, 25, True, _seed(3, 4))]

    one, two = _with_threads(1, run), _with_threads(2, run)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)
    _check_rows(one[0], R.sample(probs, 25, False, _seed(3, 4)), dtype)
    assert torch.equal(one[1], R.sample(probs, 25, True, _seed(3, 4)))


# The kernel checks the values in its own pass (no separate probs.min()): every place a bad value can sit
# must be seen. Cells: the heap-filling phase (j < k), the vector blocks, the row tail (N % 8, N % 64), the
# last row of a group of 8 rows (with replacement) and the second piece of a row split over 2 threads.
@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bad", ["nan", "negative"])
@pytest.mark.parametrize("B,N,row,col", [(1, 5, 0, 1), (3, 1000, 2, 517), (9, 203, 8, 202), (2, 203, 1, 200)])
def test_kernel_refuses_nan_and_negative_probs(replace, dtype, bad, B, N, row, col):
    probs = _probs(B, N, dtype)
    idx_ok = OPS.sample(probs, 3, replace, _seed())  # the same input without the bad value passes
    assert idx_ok.shape == (B, 3)
    probs[row, col] = float("nan") if bad == "nan" else -1e-7
    msg = "probs contains NaN" if bad == "nan" else "probs contains negative values"
    for threads in (1, 2):
        with pytest.raises(ValueError, match=msg):
            _with_threads(threads, lambda: OPS.sample(probs, 3, replace, _seed()))


@pytest.mark.parametrize("replace", [False, True])
def test_kernel_refuses_bad_value_in_second_piece_of_a_split_row(replace):
    probs = _probs(1, 20000, torch.float32)
    probs[0, 15001] = float("nan")
    with pytest.raises(ValueError, match="probs contains NaN"):
        _with_threads(2, lambda: OPS.sample(probs, 4, replace, _seed()))
    probs[0, 15001] = -0.0  # negative zero is not negative
    assert OPS.sample(probs, 4, replace, _seed()).shape == (1, 4)
