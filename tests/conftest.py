"""Shared fixtures: seeded RNGs, a temporary store, one torch thread (CI has 2 cores)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def store(tmp_path):
    from rlhf_gym.store import FeedbackStore

    s = FeedbackStore(tmp_path / "feedback.db")
    yield s
    s.close()
