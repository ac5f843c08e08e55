"""Peak tensor memory of a piece of PyTorch code, seen op by op (CPU or GPU).

RSS only grows when the allocator asks the OS for new pages, so reused heap memory hides small
buffers; this probe instead watches every op's output storages under a ``TorchDispatchMode``.

    probe = TensorMemoryProbe([inputs...])
    with probe:
        fn()
    probe.largest, probe.peak_live   # bytes
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class TensorMemoryProbe(TorchDispatchMode):
    """Records the tensor storages that ops run inside the mode allocate.

    ``largest``: the biggest single new storage. ``peak_live``: the most bytes of new storages
    alive at once, each counted from the op that made it until its tensor is freed.
    """

    def __init__(self, inputs: list[torch.Tensor]) -> None:
        super().__init__()
        self.known = {t.untyped_storage().data_ptr() for t in inputs}
        self.live: dict[int, int] = {}
        self.largest = 0
        self.peak_live = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if not isinstance(leaf, torch.Tensor):
                continue
            storage = leaf.untyped_storage()
            ptr = storage.data_ptr()
            if ptr in self.known or ptr in self.live or storage.nbytes() == 0:
                continue
            self.live[ptr] = storage.nbytes()
            weakref.finalize(leaf, self.live.pop, ptr, None)
            self.largest = max(self.largest, storage.nbytes())
            self.peak_live = max(self.peak_live, sum(self.live.values()))
        return out
