"""Reading a batch of sources: (B, k, 2) offsets -> (B, k, C, ph, pw) patches on the target device.

To a CUDA device the patches go through one reused pinned host buffer, then cross without blocking the
host (``non_blocking=True``: the copy overlaps the next batch's reads and the model's kernels). Before
the buffer is overwritten we wait for the event recorded after its last copy, so a pending transfer
never reads half-written patches."""

from __future__ import annotations

import torch

from .source import Source, check_size


class _Staging:
    def __init__(self):
        self.buf: torch.Tensor | None = None  # flat pinned uint8
        self.event = None
        self.bytes_to_device = 0  # bytes that crossed host -> device through the buffer (benchmarks read it)

    def get(self, shape, dtype) -> torch.Tensor:
        n = torch.Size(shape).numel() * torch.empty(0, dtype=dtype).element_size()
        if self.event is not None:
            self.event.synchronize()  # the previous transfer out of the buffer has finished
        if self.buf is None or self.buf.numel() < n:
            self.buf = torch.empty(max(n, 1 << 20), dtype=torch.uint8, pin_memory=True)
        return self.buf[:n].view(dtype).view(shape)

    def send(self, host: torch.Tensor, device: torch.device) -> torch.Tensor:
        out = host.to(device, non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record(torch.cuda.current_stream(device))
        self.bytes_to_device += host.numel() * host.element_size()
        return out


STAGING = _Staging()


def read_batch(srcs: list[Source], offsets: torch.Tensor, size, device=None, *, level: int = 0):
    """Patches of each source at its offsets: (B, k, C, ph, pw) in the sources' dtype on ``device``."""
    ph, pw = check_size(size)
    if not isinstance(offsets, torch.Tensor) or offsets.dtype != torch.int64:
        raise TypeError("offsets must be an int64 torch.Tensor of shape (B, k, 2)")
    if offsets.dim() != 3 or offsets.shape[0] != len(srcs) or offsets.shape[2] != 2:
        raise ValueError(f"offsets must have shape (B={len(srcs)}, k, 2), got {tuple(offsets.shape)}")
    C, dtype = srcs[0].shape[0], srcs[0].dtype
    for s in srcs[1:]:
        if s.shape[0] != C or s.dtype != dtype:
            raise ValueError(
                f"sources in one batch must share channels and dtype: {srcs[0].name} is "
                f"{C} x {dtype}, {s.name} is {s.shape[0]} x {s.dtype}"
            )
    off = offsets.detach().cpu()
    target = torch.device(device) if device is not None else torch.device("cpu")
    shape = (len(srcs), off.shape[1], C, ph, pw)
    # pin_memory raises without an accelerator: stage only for a CUDA target on a CUDA machine.
    staged = target.type == "cuda" and torch.cuda.is_available()
    out = STAGING.get(shape, dtype) if staged else torch.empty(shape, dtype=dtype)
    for b, s in enumerate(srcs):
        out[b] = s.read_patches(off[b], (ph, pw), level=level)
    if staged:
        return STAGING.send(out, target)
    return out.to(target) if target.type != "cpu" else out
