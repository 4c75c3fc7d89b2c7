"""torch.library.opcheck over every op registered in torch.ops.zoomkern, and torch.compile."""

import pytest
import torch

import zoomkern as zk

g = torch.Generator().manual_seed(0)
_probs = torch.softmax(torch.randn(2, 6, 7, generator=g), -1)
_probs = _probs / _probs.sum((1, 2), keepdim=True)
_img = torch.rand(2, 3, 20, 21, generator=g, dtype=torch.float64, requires_grad=True)
_off = torch.tensor([[[0, 0], [15, 18], [-2, 3]], [[5, 5], [1, 19], [19, 1]]])
SAMPLES = {
    "spatial_softmax": [
        (torch.randn(3, 5, 7, requires_grad=True), 0.8, 0.1, None),
        (torch.randn(2, 9, dtype=torch.float64, requires_grad=True), 1.0, 0.0, torch.rand(2, 9) > 0.2),
    ],
    "spatial_softmax_backward": [
        (_probs, torch.randn(2, 6, 7), torch.randn(2), 1.0, 0.0, None),
    ],
    "sample_patches": [(_probs, 4, False, torch.tensor([3, 5])), (_probs, 6, True, torch.tensor([1, 2]))],
    "expectation": [
        (torch.randn(2, 4, 3, requires_grad=True), torch.rand(2, 4, requires_grad=True) * 0.2, False),
        (torch.randn(2, 4, 3, 2, requires_grad=True), torch.rand(2, 4, requires_grad=True) * 0.2, True),
    ],
    "cells_to_offsets": [(torch.tensor([[0, 5, 11]]), [3, 4], [30, 40], [5, 5])],
    "gather_patches": [
        (_img, _off, 4, 5, "CHW", torch.float64, None, None),
        (
            torch.randint(0, 255, (2, 20, 21, 3), dtype=torch.uint8, generator=g),
            _off,
            3,
            3,
            "HWC",
            torch.float32,
            torch.tensor([1.0, 2.0, 3.0]),
            torch.tensor([2.0, 2.0, 2.0]),
        ),
    ],
    "gather_patches_backward": [
        (
            torch.randn(2, 3, 3, 4, 5, dtype=torch.float64),
            [2, 3, 20, 21],
            torch.float64,
            _off,
            4,
            5,
            "CHW",
            None,
        ),
    ],
}


def _all_ops():
    return sorted(
        n
        for n in dir(torch.ops.zoomkern)
        if isinstance(getattr(torch.ops.zoomkern, n), torch._ops.OpOverloadPacket)
    )


def test_every_registered_op_has_samples():
    missing = set(_all_ops()) - set(SAMPLES)
    assert not missing, f"ops without opcheck samples: {missing}"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_opcheck(name):
    op = getattr(torch.ops.zoomkern, name).default
    for args in SAMPLES[name]:
        torch.library.opcheck(op, args)


class _FeatureNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)

    def forward(self, x):  # (B, k, 1, ph, pw) -> (B, k, 4)
        B, k = x.shape[:2]
        return self.conv(x.flatten(0, 1)).mean((2, 3)).view(B, k, -1)


def _pipeline(logits, image, net):
    probs, ent = zk.spatial_softmax(logits, return_entropy=True)
    s = zk.sample_patches(probs, 3)
    off = zk.cells_to_offsets(s.indices, (8, 8), (64, 64), (9, 9))
    patches = zk.gather_patches(image, off, (9, 9), dtype=torch.float32, mean=[100.0], std=[50.0])
    return zk.expectation(net(patches), s.probs).sum() - 0.01 * ent.sum()


def test_torch_compile_fullgraph_pipeline_forward_backward():
    torch.manual_seed(0)
    net = _FeatureNet()
    logits = torch.randn(2, 8, 8, requires_grad=True)
    image = torch.randint(0, 255, (2, 1, 64, 64), dtype=torch.uint8)
    torch.manual_seed(1)
    eager = _pipeline(logits, image, net)
    (g_eager,) = torch.autograd.grad(eager, logits)
    compiled = torch.compile(_pipeline, fullgraph=True, backend="aot_eager")
    torch.manual_seed(1)
    out = compiled(logits, image, net)
    (g_comp,) = torch.autograd.grad(out, logits)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(g_comp, g_eager)
