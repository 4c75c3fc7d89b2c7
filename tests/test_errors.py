"""Every bad input of DESIGN.md gets a clear error that names the argument."""

import pytest
import torch

import zoomkern as zk

P = torch.full((2, 10), 0.1)
IMG = torch.zeros(2, 1, 20, 20, dtype=torch.uint8)
OFF = torch.zeros(2, 3, 2, dtype=torch.int64)

CASES = [
    (lambda: zk.spatial_softmax(torch.zeros(2, 3, dtype=torch.int64)), TypeError, "logits has dtype int64"),
    (lambda: zk.spatial_softmax(torch.zeros(3)), ValueError, "logits must have at least 2"),
    (lambda: zk.spatial_softmax(torch.zeros(2, 3), temperature=0), ValueError, "temperature"),
    (lambda: zk.spatial_softmax(torch.zeros(2, 3), smoothing=1.5), ValueError, "smoothing"),
    (lambda: zk.spatial_softmax(torch.zeros(2, 3), mask=torch.ones(2, 3)), TypeError, "mask has dtype"),
    (
        lambda: zk.spatial_softmax(torch.zeros(2, 3), mask=torch.ones(2, 4, dtype=torch.bool)),
        ValueError,
        "mask has shape",
    ),
    (
        lambda: zk.spatial_softmax(torch.zeros(2, 3), mask=torch.tensor([[True] * 3, [False] * 3])),
        ValueError,
        "no True position for sample 1",
    ),
    (lambda: zk.sample_patches(P, -1), ValueError, "k must be positive"),
    (lambda: zk.sample_patches(P, 0), ValueError, "k must be positive"),
    (lambda: zk.sample_patches(P, 2.0), TypeError, "k must be an int"),
    (lambda: zk.sample_patches(P, 11), ValueError, "k=11 is larger than the number of positions"),
    (lambda: zk.sample_patches(torch.tensor([[0.5, 0.5, 0.0]]), 3), ValueError, "positive positions"),
    (lambda: zk.sample_patches(torch.tensor([[float("nan"), 0.5]]), 1), ValueError, "probs contains NaN"),
    (lambda: zk.sample_patches(torch.tensor([[-0.5, 1.5]]), 1), ValueError, "negative"),
    (lambda: zk.sample_patches(P.long(), 1), TypeError, "probs has dtype int64"),
    (lambda: zk.expectation(torch.zeros(2, 3, 4), torch.zeros(2, 4)), ValueError, "disagree on"),
    (
        lambda: zk.expectation(torch.zeros(2, 3, 4), torch.zeros(2, 3, 1)),
        ValueError,
        "sampled_probs must have 2",
    ),
    (lambda: zk.gather_patches(IMG, OFF.int(), (4, 4)), TypeError, "offsets has dtype int32"),
    (lambda: zk.gather_patches(IMG, OFF, (0, 4)), ValueError, "size must be positive"),
    (lambda: zk.gather_patches(IMG, OFF, (4, -1)), ValueError, "size must be positive"),
    (lambda: zk.gather_patches(IMG[0], OFF, (4, 4)), ValueError, "image must have 4 dimensions"),
    (lambda: zk.gather_patches(IMG.int(), OFF, (4, 4)), TypeError, "image has dtype int32"),
    (lambda: zk.gather_patches(IMG, OFF[:1], (4, 4)), ValueError, "offsets must have shape"),
    (lambda: zk.gather_patches(IMG, OFF, (4, 4), layout="NCHW"), ValueError, "layout"),
    (lambda: zk.gather_patches(IMG, OFF, (4, 4), mean=[1.0, 2.0]), ValueError, "mean must have 1 or C=1"),
    (lambda: zk.gather_patches(IMG, OFF, (4, 4), std=[0.0]), ValueError, "std must be non-zero"),
    (
        lambda: zk.gather_patches(IMG, OFF, (4, 4), mean=[1.0], dtype=torch.uint8),
        ValueError,
        "floating dtype",
    ),
    (lambda: zk.gather_patches("x.png", OFF, (4, 4)), TypeError, "image must be a torch.Tensor"),
]


@pytest.mark.parametrize("call,exc,message", CASES, ids=[c[2] for c in CASES])
def test_clear_error(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_forced_unknown_backend(monkeypatch):
    monkeypatch.setenv("ZOOMKERN_BACKEND", "fpga")
    with pytest.raises(zk.BackendError, match="ZOOMKERN_BACKEND='fpga' is not one of"):
        zk.spatial_softmax(torch.zeros(1, 3))


def test_forced_backend_that_cannot_run_lists_reason(monkeypatch):
    monkeypatch.setenv("ZOOMKERN_BACKEND", "cuda")
    with pytest.raises(zk.BackendError, match="cannot run softmax_fwd on cpu: tensors are on cpu"):
        zk.spatial_softmax(torch.zeros(1, 3))


def test_info_runs():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "zoomkern.info"], capture_output=True, text=True, check=True)
    assert "softmax_fwd" in out.stdout and "reference" in out.stdout
