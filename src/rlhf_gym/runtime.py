"""Process settings a job may change for its own duration, restored afterwards (no lasting side effects)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


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


def quiet_sb3(algo: Any) -> Any:
    """Give an SB3 algorithm a logger that writes nothing: without one, every ``learn()`` makes an empty
    ``/tmp/SB3-<date>`` folder (a side effect no library call should have). Our runs log themselves."""
    from stable_baselines3.common.logger import Logger

    algo.set_logger(Logger(folder=None, output_formats=[]))
    return algo
