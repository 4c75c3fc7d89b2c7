"""gather_patches on devices: no host sync in the argument checks, and the pinned-host CUDA gather keeps
its image alive on the caching host allocator until the kernel has read it (issue 10, item 5)."""

import pytest
import torch

import zoomkern as zk
from zoomkern import backends
from zoomkern.ops.gather import _channel_vector
from zoomkern.reference import gather_patches_ref


def test_std_check_of_a_device_tensor_reads_nothing_back():
    # A meta tensor has no values: reading one back (the host sync a CUDA tensor would pay) raises.
    t = _channel_vector("std", torch.ones(3, device="meta"), 3, torch.device("meta"))
    assert t.device.type == "meta" and t.shape == (3,)


def test_std_check_on_host_values_still_raises():
    for std in ([1.0, 0.0, 2.0], torch.tensor([0.0]), 0.0):
        with pytest.raises(ValueError, match="std must be non-zero"):
            _channel_vector("std", std, 3, torch.device("meta"))
    with pytest.raises(ValueError, match="std must be non-zero"):
        zk.gather_patches(
            torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 2, dtype=torch.int64), (2, 2), std=[1, 0, 1]
        )


cuda_gather = pytest.mark.skipif(
    not torch.cuda.is_available() or backends.why_not("cuda", "gather", torch.device("cuda")) is not None,
    reason="needs a GPU and zoomkern._C built with its CUDA gather",
)


@pytest.mark.gpu
@cuda_gather
def test_cuda_std_check_does_not_sync():
    image = torch.rand(1, 3, 16, 16, device="cuda")
    offsets = torch.zeros(1, 2, 2, dtype=torch.int64, device="cuda")
    std = torch.tensor([1.0, 2.0, 3.0], device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        zk.gather_patches(image, offsets, (4, 4), std=std)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@cuda_gather
def test_pinned_image_freed_right_after_the_call_is_not_reused_early():
    # The kernel waits behind a long sleep on the stream; the pinned image is dropped at once and a new
    # pinned tensor of the same size is written. Without the host-allocator event, the allocator hands the
    # same block out again and the kernel reads the new bytes.
    nbytes = 1 << 22
    side = 1024
    src = torch.randint(0, 200, (1, side, side, 4), dtype=torch.uint8)
    offsets = torch.tensor([[[0, 0], [100, 200], [-5, 1020]]], device="cuda")
    expect = gather_patches_ref(src, offsets.cpu(), (64, 64), layout="HWC")
    for _ in range(3):
        pinned = src.pin_memory()
        assert pinned.numel() == nbytes
        torch.cuda._sleep(50_000_000)  # ~tens of ms of GPU time before the gather runs
        out = zk.gather_patches(pinned, offsets, (64, 64), layout="HWC", device="cuda")
        del pinned
        reuse = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        reuse.fill_(255)
        torch.cuda.synchronize()
        assert torch.equal(out.cpu(), expect)
        del reuse
