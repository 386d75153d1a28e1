"""Pixel clips kept compactly: image arrays as compressed ``.npz`` files beside the store, referenced from it.

A preference query on a pixel game holds two clips of, say, 50 stacked 4x84x84 frames: 2.8 MB of
``uint8`` per clip, about four times that as a JSON list. The store keeps them instead as
``np.savez_compressed`` files named by the SHA-256 of their content (a clip asked twice is stored once),
in a folder beside an SQLite file (``feedback.db`` -> ``feedback.frames/``) or a folder given for a
server database, and the query's JSON holds only a reference ``{"frames": "<sha256>.npz", "shape", "dtype"}``.
Without a folder (label exports, queries posted over HTTP) the same arrays travel inline as base64 of the
compressed file. Either way no pixel is ever a JSON number, and loading never unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

NAME = re.compile(r"^[0-9a-f]{64}\.npz$")


def is_pixels(a: np.ndarray) -> bool:
    """Per-step arrays of images (``steps x H x W [x C]``, integer pixels): stored compressed, not as lists."""
    return a.ndim >= 3 and a.dtype == np.uint8


def _npz(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.ascontiguousarray(a))
    return buf.getvalue()


def _load(data: bytes, ref: dict[str, Any]) -> np.ndarray:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        a = z["a"]
    shape, dtype = tuple(ref.get("shape", a.shape)), str(ref.get("dtype", a.dtype))
    if a.shape != shape or str(a.dtype) != dtype:
        raise ValueError(f"stored frames have shape {a.shape} {a.dtype}, the reference says {shape} {dtype}")
    return a


class InlineFrames:
    """Compressed arrays inline in the JSON, as base64 (for exports and HTTP, where no folder is shared)."""

    def encode(self, a: np.ndarray) -> dict[str, Any]:
        return {"npz_b64": base64.b64encode(_npz(a)).decode("ascii"), "shape": list(a.shape), "dtype": str(a.dtype)}

    def decode(self, ref: dict[str, Any]) -> np.ndarray:
        if "npz_b64" in ref:
            return _load(base64.b64decode(ref["npz_b64"]), ref)
        if "frames" in ref:
            raise ValueError(f"the clip refers to stored frames {ref['frames']!r}; read it through the store "
                             "that holds them (FeedbackStore.query)")
        raise ValueError(f"not a frames reference: keys {sorted(ref)}")


class FrameFiles(InlineFrames):
    """Compressed arrays in files in ``folder``, named by content hash; reads inline ones too."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def encode(self, a: np.ndarray) -> dict[str, Any]:
        data = _npz(a)
        name = hashlib.sha256(data).hexdigest() + ".npz"
        path = self.folder / name
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)  # atomic: a reader never sees half a file
        return {"frames": name, "shape": list(a.shape), "dtype": str(a.dtype)}

    def decode(self, ref: dict[str, Any]) -> np.ndarray:
        if "frames" not in ref:
            return super().decode(ref)
        name = str(ref["frames"])
        if not NAME.match(name):  # a reference names a file in our folder, never a path
            raise ValueError(f"bad frames reference {name!r}")
        path = self.folder / name
        if not path.exists():
            raise ValueError(f"stored frames {name} are missing from {self.folder}")
        return _load(path.read_bytes(), ref)

    def size(self) -> int:
        """Bytes on disk of every stored frames file."""
        return sum(p.stat().st_size for p in self.folder.glob("*.npz")) if self.folder.exists() else 0


def encode_array(a: np.ndarray, codec: InlineFrames | None) -> Any:
    """A JSON-safe form of ``a``: a frames reference for pixels, a plain list otherwise."""
    if is_pixels(a):
        return (codec or InlineFrames()).encode(a)
    return a.tolist()


def decode_array(v: Any, codec: InlineFrames | None) -> Any:
    """The inverse of :func:`encode_array`."""
    if isinstance(v, dict):
        return (codec or InlineFrames()).decode(v)
    return v
