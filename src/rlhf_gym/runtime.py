"""Process settings a job may change for its own duration, restored afterwards (no lasting side effects)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` PyTorch CPU threads inside the block and restore the previous setting after it.

    Jobs run with one thread by default (small networks, several jobs per machine); two jobs with
    different settings can run one after the other in the same process.
    """
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
