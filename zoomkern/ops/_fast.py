"""When a public op may call its kernel without the custom-op dispatch.

Each op is a ``torch.library.custom_op`` so that autograd, ``torch.compile``, fake tensors and the
dispatcher's modes see one opaque op. That machinery costs ~30-60 us per call on this project's 2-core
CPU (Python autograd and backend wrappers, two trips through the dispatcher): 10-15% of a 0.5 ms
softmax or gather. When none of it can apply (plain CPU tensors, no gradient to record, not compiling or
jit-tracing, no torch-function or dispatch mode active, no functorch transform), the public function
calls the op's body directly: the same Python body the custom op runs, so the results are the same.
"""

from __future__ import annotations

import torch

_C = torch._C


def direct(*tensors) -> bool:
    """True when the op body may run without the custom op for these inputs (None entries are skipped)."""
    if torch.compiler.is_compiling() or _C._is_torch_function_mode_enabled():
        return False
    if _C._len_torch_dispatch_stack() or _C._get_tracing_state() is not None:  # modes, torch.jit.trace
        return False
    grad = _C.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        # Exact type: subclasses (fake and functorch-wrapped tensors among them) keep the dispatch.
        if type(t) is not torch.Tensor or not t.is_cpu or (grad and t.requires_grad):
            return False
        if _C._functorch.is_functorch_wrapped_tensor(t):
            return False
    return True
