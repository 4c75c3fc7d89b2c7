"""The public ops skip the custom-op dispatch only when nothing needs it (zoomkern/ops/_fast.py).

The direct call runs the same op body as the custom op, so the results are equal; these tests check that
the shortcut is taken for plain CPU inference calls and never where autograd, a mode, a transform or a
tensor subclass needs the dispatcher.
"""

import pytest
import torch
from torch.overrides import TorchFunctionMode

import zoomkern as zk
from zoomkern.ops import _fast
from zoomkern.ops import gather as gather_op
from zoomkern.ops import sample as sample_op
from zoomkern.ops import softmax as softmax_op


def _spy(monkeypatch, module, name):
    """Replace the custom op ``module.name`` by one that records the call, then runs the real op."""
    real, calls = getattr(module, name), []

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_softmax_inference_call_skips_the_custom_op_and_matches_it(monkeypatch):
    x = torch.randn(3, 17, 19)
    mask = torch.rand(3, 17, 19) < 0.7
    mask[:, 0, 0] = True
    want = torch.ops.zoomkern.spatial_softmax(x, 0.7, 0.1, mask)
    calls = _spy(monkeypatch, softmax_op, "_spatial_softmax")
    with torch.no_grad():
        p, ent = zk.spatial_softmax(x, temperature=0.7, smoothing=0.1, mask=mask, return_entropy=True)
    assert not calls
    assert torch.equal(p, want[0]) and torch.equal(ent, want[1])
    # Gradients are needed: the custom op (its autograd formula) runs.
    p = zk.spatial_softmax(x.requires_grad_())
    assert len(calls) == 1 and p.grad_fn is not None
    p.sum().backward()


def test_gather_inference_call_skips_the_custom_op_and_matches_it(monkeypatch):
    img = torch.randint(0, 256, (2, 3, 40, 30), dtype=torch.uint8)
    offs = torch.randint(-10, 35, (2, 5, 2))
    mean, std = torch.tensor([1.0, 2, 3]), torch.tensor([4.0, 5, 6])
    want = torch.ops.zoomkern.gather_patches(img, offs, 7, 9, "CHW", torch.float32, mean, std)
    calls = _spy(monkeypatch, gather_op, "_gather_patches")
    out = zk.gather_patches(img, offs, (7, 9), dtype=torch.float32, mean=mean, std=std)
    assert not calls and torch.equal(out, want)
    fimg = img.float().requires_grad_()
    zk.gather_patches(fimg, offs, (7, 9)).sum().backward()
    assert len(calls) == 1 and fimg.grad is not None


def test_sample_call_skips_the_custom_op_and_matches_it(monkeypatch):
    probs = torch.softmax(torch.randn(4, 50), 1).requires_grad_()  # indices carry no gradient either way
    g = torch.Generator().manual_seed(3)
    want = zk.sample_patches(probs, 6, generator=g).indices
    calls = _spy(monkeypatch, sample_op, "_sample_patches")
    got = zk.sample_patches(probs, 6, generator=torch.Generator().manual_seed(3))
    assert not calls and torch.equal(got.indices, want)
    got.probs.sum().backward()  # the gathered probs stay differentiable
    assert probs.grad is not None


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:FutureWarning")
def test_direct_refuses_modes_transforms_and_subclasses():
    x = torch.randn(3)
    assert _fast.direct(x, None)
    assert not _fast.direct(torch.randn(3, requires_grad=True))
    with torch.no_grad():
        assert _fast.direct(torch.randn(3, requires_grad=True))
    with TorchFunctionMode():
        assert not _fast.direct(x)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        assert not _fast.direct(torch.empty(3))
    seen = []
    torch.vmap(lambda t: seen.append(_fast.direct(t)) or t)(torch.ones(2, 3))
    torch.func.grad(lambda t: seen.append(_fast.direct(t)) or t.sum())(torch.ones(3))
    assert seen == [False, False]
    traced = []
    torch.jit.trace(lambda t: traced.append(_fast.direct(t)) or t * 2, (x,), check_trace=False)
    assert traced == [False]
    if torch.cuda.is_available():
        assert not _fast.direct(x.cuda())


@pytest.mark.parametrize("op", ["softmax", "gather"])
def test_ops_still_trace_under_torch_compile_fullgraph(op):
    # Dynamo traces the public function: the shortcut must not be taken there (it would graph-break on
    # the opaque C++ call); the custom op is one node of the graph.
    if op == "softmax":
        fn, args = (lambda x: zk.spatial_softmax(x)), (torch.randn(2, 5, 6),)
    else:
        img = torch.randint(0, 9, (1, 1, 8, 8), dtype=torch.uint8)
        offs = torch.zeros(1, 2, 2, dtype=torch.int64)
        fn, args = (lambda i, o: zk.gather_patches(i, o, (3, 3))), (img, offs)
    compiled = torch.compile(fn, fullgraph=True, backend="eager")
    assert torch.equal(compiled(*args), fn(*args))
