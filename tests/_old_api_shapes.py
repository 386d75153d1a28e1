"""Spaces shaped like old ``gym``'s (neither gym's nor Gymnasium's classes), for the old-API adapter tests."""

from __future__ import annotations

import numpy as np


class Box:
    def __init__(self, low, high, shape, dtype):
        self.low, self.high = np.full(shape, low, dtype=dtype), np.full(shape, high, dtype=dtype)
        self.shape, self.dtype = shape, np.dtype(dtype)


class Discrete:
    def __init__(self, n):
        self.n = n
