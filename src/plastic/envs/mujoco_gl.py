"""MuJoCo's headless OpenGL backend: chosen before dm_control loads, and one GL context per process.

dm_control fixes its rendering backend (`MUJOCO_GL`) when it is first imported, so the choice is made here, before
`plastic.envs.dmc` imports it. `select_rendering_backend()` respects a user's `MUJOCO_GL`, otherwise tries egl,
osmesa, glfw (each in a short subprocess, once per process) and raises `RenderingBackendError` (one line: the
backends tried and the Debian packages to install) if none works. `make_camera()` creates the GL context and turns
the two ways that can fail (an opaque GL error; a process forked after its parent made a context, which hangs) into
the same one-line error. docs/dmc.md explains the backends to users.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any


class RenderingBackendError(RuntimeError):
    """No headless OpenGL backend works for MuJoCo; the message names those tried and what to install."""


RENDERING_BACKENDS = ("egl", "osmesa", "glfw")
_DEBIAN_PACKAGES = {"egl": "libegl1 libgl1-mesa-dri", "osmesa": "libosmesa6", "glfw": "libglfw3 (needs a display)"}
_PYOPENGL_PLATFORM = {"egl": "egl", "osmesa": "osmesa"}

# Renders one 16x16 frame of a one-sphere model: proves the backend can make a context and draw.
_PROBE_SCRIPT = """
from dm_control import mujoco
physics = mujoco.Physics.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
assert physics.render(16, 16).shape == (16, 16, 3)
"""

_selected_backend: str | None = None
_gl_context_pid: int | None = None  # the process that made this module's first GL context (see make_camera)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _probe_backend(backend: str) -> str | None:
    """None if `backend` renders in a fresh process, else a one-line reason."""
    environment = dict(os.environ, MUJOCO_GL=backend)
    if backend in _PYOPENGL_PLATFORM:
        environment.setdefault("PYOPENGL_PLATFORM", _PYOPENGL_PLATFORM[backend])
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE_SCRIPT], env=environment, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return "timed out"
    return None if result.returncode == 0 else _last_line(result.stderr)


def select_rendering_backend() -> str:
    """Chooses MuJoCo's OpenGL backend and sets `MUJOCO_GL` (and `PYOPENGL_PLATFORM`) before dm_control loads.

    A `MUJOCO_GL` set by the user is the only candidate; otherwise egl, osmesa and glfw are tried in that order.
    The answer is cached for the process. Raises `RenderingBackendError` when none works.
    """
    global _selected_backend
    if _selected_backend is not None:
        return _selected_backend
    if "dm_control._render" in sys.modules:  # dm_control fixed its backend at import; it cannot change now
        backend = sys.modules["dm_control._render"].BACKEND
        if backend is None:
            raise RenderingBackendError(
                "dm_control was imported before plastic.envs.dmc and found no OpenGL backend; set MUJOCO_GL=egl "
                f"(Debian: {_DEBIAN_PACKAGES['egl']}) or MUJOCO_GL=osmesa (Debian: {_DEBIAN_PACKAGES['osmesa']})"
            )
        _selected_backend = backend
        return backend
    user_choice = os.environ.get("MUJOCO_GL")
    candidates = (user_choice,) if user_choice else RENDERING_BACKENDS
    failures = []
    for backend in candidates:
        reason = _probe_backend(backend)
        if reason is None:
            os.environ["MUJOCO_GL"] = backend
            if backend in _PYOPENGL_PLATFORM:
                os.environ.setdefault("PYOPENGL_PLATFORM", _PYOPENGL_PLATFORM[backend])
            _selected_backend = backend
            return backend
        failures.append(f"{backend} ({reason})")
    install = "; ".join(f"{name}: apt-get install {packages}" for name, packages in _DEBIAN_PACKAGES.items())
    source = "MUJOCO_GL set by the user" if user_choice else "tried"
    raise RenderingBackendError(
        f"no working MuJoCo OpenGL backend ({source}: {', '.join(failures)}); install one ({install}) "
        "and/or set MUJOCO_GL to egl, osmesa or glfw"
    )


def make_camera(physics: Any, image_size: int, camera_id: int) -> Any:
    """A dm_control `Camera` rendering `image_size`-square frames; creating it makes this process's GL context."""
    from dm_control.mujoco import Camera

    global _gl_context_pid
    if _gl_context_pid is not None and _gl_context_pid != os.getpid():
        # A child forked from a process that already held a GL context hangs (egl and osmesa alike) when it makes
        # its own; fail loudly instead.
        raise RenderingBackendError(
            f"this process was forked from process {_gl_context_pid} after it had created an OpenGL "
            "context, and MuJoCo rendering hangs after such a fork; start workers with the 'spawn' or "
            "'forkserver' multiprocessing context (e.g. gymnasium AsyncVectorEnv(..., context='forkserver'))"
        )
    try:  # the GL context is made here; turn an opaque GL failure into one line that says what to do
        camera = Camera(physics, image_size, image_size, camera_id=camera_id)
    except Exception as error:
        backend = os.environ.get("MUJOCO_GL", "chosen by dm_control")
        raise RenderingBackendError(
            f"MuJoCo could not create an OpenGL context with MUJOCO_GL={backend} "
            f"({type(error).__name__}: {_last_line(str(error))}); set MUJOCO_GL=egl "
            f"(Debian: {_DEBIAN_PACKAGES['egl']}) or MUJOCO_GL=osmesa (Debian: {_DEBIAN_PACKAGES['osmesa']}) "
            "before dm_control is imported"
        ) from error
    _gl_context_pid = os.getpid()
    return camera
