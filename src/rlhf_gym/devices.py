"""Which PyTorch device a run uses: ``--device auto|cpu|cuda`` (or ``cuda:N``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def check_device(name: str) -> str:
    """``name`` if it is a device choice we understand, else ValueError naming the choices."""
    if name in DEVICE_CHOICES or re.fullmatch(r"cuda:\d+", name or ""):
        return name
    raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")


def resolve_device(name: str = "auto") -> str:
    """The device to put models on: ``auto`` is ``cuda`` when PyTorch sees a GPU, else ``cpu``.

    Asking for ``cuda`` on a machine without one is an error (rather than a silent CPU run).
    """
    import torch

    check_device(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: PyTorch sees no CUDA GPU here (torch {torch.__version__}); "
                             "use --device cpu or auto")
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return name


@contextmanager
def cpu_seed(seed: int) -> Iterator[None]:
    """PyTorch's global CPU generator seeded with ``seed`` inside the block and restored after it.

    Models are built (randomly initialised) on the CPU inside this block and only then moved to their device,
    so a seed gives the same initial weights on every machine; unlike ``torch.manual_seed`` it leaves the
    CUDA generators alone.
    """
    import torch

    state = torch.random.get_rng_state()
    torch.random.default_generator.manual_seed(int(seed))
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
