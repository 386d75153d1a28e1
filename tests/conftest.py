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


@pytest.fixture
def live_web(tmp_path):
    """The annotation app serving on 127.0.0.1 (alice and bob invited and consenting), and its store."""
    from _web_helpers import LiveServer, add_people, tmp_app

    store, app = tmp_app(tmp_path)
    add_people(store)
    srv = LiveServer(app)
    yield srv, store
    srv.stop()
    store.close()
