"""The CPU-side check of the CUDA host-sync tests: where tensors are made from host data."""

from torch.utils._python_dispatch import TorchDispatchMode


class HostData(TorchDispatchMode):
    """Records tensors made from host data (``torch.tensor``, ``from_numpy``, list indices: the
    ``lift_fresh`` operators) while active, except inside ``upload``, whose pinned, non-blocking
    copy is the one way that does not make a CUDA stream wait.

    ``modules``: those whose ``upload`` name is patched (``monkeypatch``) to be recognised.
    After the block, ``elsewhere`` lists the operators made outside it, ``uploads`` counts calls.
    """

    def __init__(self, monkeypatch, *modules):
        super().__init__()
        self.uploads, self.elsewhere, self._inside = 0, [], 0
        real = modules[0].upload

        def upload(*args, **kwargs):
            self.uploads += 1
            self._inside += 1
            try:
                return real(*args, **kwargs)
            finally:
                self._inside -= 1

        for module in modules:
            monkeypatch.setattr(module, "upload", upload)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in ("lift_fresh", "lift_fresh_copy") and not self._inside:
            self.elsewhere.append(func)
        return func(*args, **(kwargs or {}))
