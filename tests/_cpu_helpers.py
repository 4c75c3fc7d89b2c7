"""Inputs and thread control shared by the C++ kernel tests (test_cpu_ext.py, test_cpu_sample.py)."""

import torch


def _probs(B, N, dtype, zero_frac=0.3, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(B, N, generator=g, dtype=torch.float64)
    x[torch.rand(B, N, generator=g) < zero_frac] = -float("inf")
    x[:, 0] = 0.0  # at least one positive position per row
    return torch.softmax(x, 1).to(dtype)


def _seed(a=12345, b=678):
    return torch.tensor([a, b], dtype=torch.int64)


def _with_threads(n, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)
