"""Shared pieces of the video modules: frame access, input checks, progress, geometry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import as_grey
from ..fibres import FibreBundle

__all__ = ["VideoProgress"]


@dataclass(frozen=True)
class VideoProgress:
    """A progress event of a long video job (registration, fusion of many windows).

    Attributes
    ----------
    done : int
        Units of work finished.
    total : int
        Units of work in all.
    stage : str
        What is being done (``"register"``, ``"fuse"``, ``"mosaic"`` ...).
    """

    done: int
    total: int
    stage: str = ""


def is_lazy(array: Any) -> bool:
    """True for dask-like arrays (they have ``compute`` and are not numpy arrays)."""
    return hasattr(array, "compute") and not isinstance(array, np.ndarray)


def check_frames(frames: Any, *, name: str = "frames", min_frames: int = 1) -> Any:
    """Validate a ``(T, H, W)`` stack (numpy or dask) without reading a lazy one.

    Returns the stack with the colour rule applied (numpy) or unchanged (dask, checked per
    frame when read). Raises ``ValueError`` with what was expected.
    """
    if isinstance(frames, (list, tuple)):
        shapes = {np.shape(f) for f in frames}
        if len(shapes) > 1:
            raise ValueError(
                f"{name}: frames of different shapes {sorted(shapes)}; every frame of a "
                "video must have the same shape"
            )
        frames = np.stack([np.asarray(f) for f in frames]) if frames else np.zeros((0, 0, 0))
    if not is_lazy(frames):
        frames = np.asarray(frames)
        if frames.dtype == bool:
            frames = frames.astype(np.uint8)
        if frames.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be real numeric frames, got dtype {frames.dtype}")
        frames = as_grey(frames, name=name)
    shape = tuple(int(s) for s in frames.shape)
    if len(shape) != 3:
        raise ValueError(f"{name} must be a stack of 2-D frames (T, H, W), got shape {shape}")
    if shape[0] < min_frames:
        raise ValueError(f"{name}: need at least {min_frames} frame(s), got {shape[0]}")
    if min(shape[1:]) < 8:
        raise ValueError(f"{name}: frames of {shape[1:]} are too small (at least 8 x 8)")
    return frames


def iter_frames(frames: Any, indices: Any = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t, frame)`` as float32 numpy, reading a dask stack one chunk at a time."""
    n = int(frames.shape[0])
    wanted = list(range(n)) if indices is None else [int(i) for i in indices]
    if not is_lazy(frames):
        for t in wanted:
            yield t, _finite(np.asarray(frames[t], dtype=np.float32), t)
        return
    bounds = np.cumsum((0, *frames.chunks[0]))
    cache: tuple[int, np.ndarray] | None = None
    for t in wanted:
        block = int(np.searchsorted(bounds, t, side="right") - 1)
        if cache is None or cache[0] != block:
            data = np.asarray(frames[bounds[block] : bounds[block + 1]].compute())
            cache = (block, as_grey(data, name=f"frames {bounds[block]}..{bounds[block + 1]}"))
        yield t, _finite(np.asarray(cache[1][t - bounds[block]], dtype=np.float32), t)


def _finite(frame: np.ndarray, t: int) -> np.ndarray:
    if not np.isfinite(frame).all():
        raise ValueError(f"frame {t} contains NaN or inf")
    return frame


def check_bundle(bundle: Any, shape: tuple[int, ...] | None = None) -> FibreBundle:
    """A FibreBundle whose grid matches the frames' ``(H, W)``, or raise."""
    if not isinstance(bundle, FibreBundle):
        raise TypeError(f"bundle must be a FibreBundle, got {type(bundle).__name__}")
    if shape is not None and tuple(shape) != bundle.shape:
        raise ValueError(
            f"frames of {tuple(shape)} do not match the fibre bundle's grid {bundle.shape}"
        )
    return bundle


def check_index(index: Any, n: int, name: str = "reference") -> int:
    """A frame index in ``[-n, n)`` as a non-negative int, or raise."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"{name} must be a frame index (int), got {index!r}")
    i = int(index)
    if not -n <= i < n:
        raise ValueError(f"{name} {i} is outside the video's {n} frames")
    return i % n


# ---------------------------------------------------------------------- geometry
#
# A frame's pose: the position in frame t of a scene point at q in the reference frame is
#     p = R(angle) (q - c) + c + shift,      c = ((H - 1) / 2, (W - 1) / 2)
# with R(a) = [[cos a, sin a], [-sin a, cos a]] acting on (y, x) column vectors.


def rotation(angle: float) -> np.ndarray:
    """2x2 matrix rotating ``(y, x)`` column vectors by ``angle`` (y towards x)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, s], [-s, c]])


def relative_poses(
    shifts: np.ndarray, angles: np.ndarray, reference: int
) -> tuple[np.ndarray, np.ndarray]:
    """Poses of every frame relative to frame ``reference`` instead of the original one.

    With ``T_t(q) = R_t (q - c) + c + s_t``, the pose relative to ``r`` is
    ``T_t o T_r^-1``: angle ``a_t - a_r`` and shift ``s_t - R_t R_r^T s_r``.
    """
    shifts = np.asarray(shifts, np.float64)
    angles = np.asarray(angles, np.float64)
    s_r = shifts[reference]
    a_r = angles[reference]
    if not np.any(angles):
        return shifts - s_r, np.zeros_like(angles)
    out = np.empty_like(shifts)
    back = rotation(a_r).T
    for t in range(len(shifts)):
        out[t] = shifts[t] - rotation(angles[t]) @ back @ s_r
    return out, angles - a_r


def compose(
    anchor_shift: np.ndarray, anchor_angle: float, shift: np.ndarray, angle: float
) -> tuple[np.ndarray, float]:
    """Pose of a frame registered against an anchor, relative to the anchor's reference.

    ``T_t = D o T_a`` with ``D(p) = R(angle) (p - c) + c + shift`` and ``T_a`` the anchor's
    pose: angle ``a_a + angle`` and shift ``R(angle) s_a + shift``.
    """
    s = rotation(angle) @ np.asarray(anchor_shift, np.float64) + np.asarray(shift, np.float64)
    return s, float(anchor_angle + angle)
