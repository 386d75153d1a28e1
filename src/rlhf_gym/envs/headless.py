"""Headless OpenGL for MuJoCo's renderer: EGL, then OSMesa, chosen once per process.

MuJoCo reads ``MUJOCO_GL`` when it first makes a rendering context. On a machine without a display
``glfw`` (its default) fails, so unless the user set ``MUJOCO_GL`` we try ``egl`` (GPU or Mesa's EGL)
and then ``osmesa`` (software) in a child process, and keep the first that renders. When none does,
training still works; only clips (terminal GIFs, web app, ``rlhf-gym video``) are unavailable, and
:func:`choose_gl` says so once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

log = logging.getLogger(__name__)

CANDIDATES = ("egl", "osmesa")
_chosen: str | None | bool = False  # False: not decided yet

_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
r = mujoco.Renderer(m, 8, 8)
d = mujoco.MjData(m)
r.update_scene(d)
assert r.render().shape == (8, 8, 3)
"""


def works(backend: str, timeout: float = 60.0) -> bool:
    """True when MuJoCo renders an offscreen frame with ``MUJOCO_GL=backend`` (tried in a child process,
    since a failed GL initialisation cannot be undone in this one)."""
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def choose_gl() -> str | None:
    """Set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) to a backend that works; None when none does.

    A value the user set is kept as is. With a display (``DISPLAY`` set) MuJoCo's default is left alone.
    """
    global _chosen
    if _chosen is not False:
        return _chosen  # type: ignore[return-value]
    if os.environ.get("MUJOCO_GL"):
        _chosen = os.environ["MUJOCO_GL"]
        return _chosen
    if os.environ.get("DISPLAY"):
        _chosen = None
        return None
    for backend in CANDIDATES:
        if works(backend):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            _chosen = backend
            log.info("MuJoCo renders headless with MUJOCO_GL=%s", backend)
            return backend
    _chosen = None
    print("WARNING: no headless OpenGL works for MuJoCo (tried MUJOCO_GL=egl and osmesa): training runs, but "
          "clips cannot be rendered. Install EGL (libegl1) or OSMesa (libosmesa6), or set MUJOCO_GL yourself.",
          file=sys.stderr, flush=True)
    return None
