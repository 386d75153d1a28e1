"""A queue drained by one thread in batches: the web app's label writer and credential resolver.

Each request puts its item and waits on a future; the thread takes everything queued while it was busy
(up to ``max_batch``) and handles it at once, so a burst costs one database round of statements, not
one per request.
"""

from __future__ import annotations

import queue
import threading
from typing import Any


def next_batch(q: queue.SimpleQueue, max_batch: int) -> list[Any]:
    """Wait for one item, then take every item already queued behind it (up to ``max_batch`` in all)."""
    batch = [q.get()]
    while len(batch) < max_batch:
        try:
            batch.append(q.get_nowait())
        except queue.Empty:
            break
    return batch


def start_drainer(name: str, q: queue.SimpleQueue, max_batch: int, handle: Any) -> threading.Thread:
    """A daemon thread calling ``handle(batch)`` for each batch taken from ``q``, for the process's life."""

    def run() -> None:
        while True:
            handle(next_batch(q, max_batch))

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t
