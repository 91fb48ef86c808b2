"""Noise of the fibre values, estimated from a registered video (leave-one-out HR^)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..fibres import FibreBundle
from ._common import check_bundle
from ._fuse import leave_one_out
from ._register import Registration, frame_values, register

__all__ = ["estimate_stack_noise", "estimate_video_noise"]

#: 1.4826 * MAD is the standard deviation of Gaussian data.
_MAD_TO_SD = 1.4826


def estimate_video_noise(
    values: Any,
    bundle: FibreBundle,
    registration: Registration,
    *,
    frames: Any = None,
    max_frames: int = 4,
    combine: bool = True,
    neighbours: int | None = 16,
) -> float:
    """Noise sd of the fibre values of a video: each frame against the others' fusion.

    A single frame cannot tell detail at the scale of the fibre spacing from noise, so
    :func:`napari_cycsr.consistency.estimate_noise` overestimates the noise of frames covered
    by fine texture (by 5-11x on the benchmark's textures at low noise). In a video the scene
    moves behind the cores: the other frames, fused (:func:`leave_one_out`, the frame itself
    left out), predict what each core of a frame should measure, and what they do not predict
    is mostly that frame's noise. For each of up to ``max_frames`` registered frames, spread
    over the video, the residual ``v_t - cell means of HR^_{-t}`` is taken over the cores whose
    Voronoi cell the other frames cover completely, and its robust standard deviation
    (1.4826 x the median absolute deviation) kept; the estimate is the median over those
    frames. The fusion's own error adds to the residual, so this is still an upper bound,
    a much tighter one on textures (validation crops: 1.7x the true level at sd 0.01 where the
    single-frame estimate is 5.4x; docs/video.md).

    Parameters
    ----------
    values : array_like, shape (T, N)
        Fibre values of every frame (``video.frame_values``; the same units as the frames).
    bundle : FibreBundle
        The fibres (N of them).
    registration : Registration
        The video's poses (:func:`napari_cycsr.video.register`): only frames it trusts are
        used, as residuals and as fusion input.
    frames : sequence of int, optional
        The frames to take residuals of (default: up to ``max_frames`` registered frames,
        evenly spread).
    max_frames : int, optional
        How many frames to use by default (each costs one fusion). Default 4.
    combine : bool, optional
        Return the smaller of this estimate and the single-frame one pooled over the same
        frames (both are upper bounds of the true level; on smooth content the single-frame
        one can be the tighter). Default True.
    neighbours : int or None, optional
        Fuse, for each frame, only its ``neighbours`` nearest registered frames in time
        (default 16), so the cost stays that of a short video however long the recording
        (every other frame for videos of up to 17 registered frames, the same as None).
        None: every other registered frame.

    Returns
    -------
    float
        The noise standard deviation in the values' units.

    Raises
    ------
    ValueError
        Fewer than two registered frames, or no core covered by the other frames.

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle_video
    >>> from napari_cycsr.video import register
    >>> vid = simulate_pcle_video(data.camera()[:200, :200], 5, noise=0.02, seed=0)
    >>> sigma = estimate_video_noise(vid.values, vid.bundle, register(vid.lr, vid.bundle))
    >>> 0.015 < sigma < 0.04
    True
    """
    from ..consistency import estimate_noise

    bundle = check_bundle(bundle)
    if not isinstance(registration, Registration):
        raise TypeError(
            f"registration must be a napari_cycsr.video.Registration, got "
            f"{type(registration).__name__}"
        )
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != bundle.n_fibres:
        raise ValueError(
            f"values must have shape (T, N) with N = {bundle.n_fibres} fibres, got {v.shape}"
        )
    if v.shape[0] != len(registration.shifts):
        raise ValueError(
            f"values has {v.shape[0]} frames and the registration {len(registration.shifts)}"
        )
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer, got {max_frames!r}")
    if neighbours is not None and (
        isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 1
    ):
        raise ValueError(f"neighbours must be a positive integer or None, got {neighbours!r}")
    good = np.flatnonzero(np.asarray(registration.confidence) >= registration.min_confidence)
    if good.size < 2:
        raise ValueError(
            f"the noise of a video needs at least 2 registered frames, got {good.size} "
            f"(confidence >= {registration.min_confidence:g})"
        )
    if frames is None:
        picks = np.unique(np.round(np.linspace(0, good.size - 1, min(max_frames, good.size))))
        chosen = [int(good[int(i)]) for i in picks]
    else:
        chosen = [int(t) for t in np.atleast_1d(frames)]
        registered = set(good.tolist())
        bad = [t for t in chosen if t not in registered]
        if bad:
            raise ValueError(f"frames {bad} are not registered frames of this video")
    cells = bundle.labels  # the Voronoi cell of each pixel (-1 outside)
    inside = cells >= 0
    sizes = np.bincount(cells[inside], minlength=bundle.n_fibres)
    levels = []
    for t in chosen:
        others = good[good != t]
        far: list[int] = []
        if neighbours is not None and others.size > neighbours:
            order = others[np.argsort(np.abs(others - t), kind="stable")]
            far = sorted(int(s) for s in order[neighbours:])
        extra = {"exclude": far} if far else {}
        reference, info = leave_one_out(v, bundle, registration, t, return_info=True, **extra)
        covered = np.asarray(info.coverage) > 0
        seen = np.bincount(cells[inside & covered], minlength=bundle.n_fibres)
        full = (seen == sizes) & (sizes > 0) & np.isfinite(v[t])
        if not full.any():
            continue
        residual = (v[t] - bundle.vectorize(reference))[full]
        mad = np.median(np.abs(residual - np.median(residual)))
        levels.append(_MAD_TO_SD * float(mad))
    if not levels:
        raise ValueError("no core of the chosen frames is covered by the other frames")
    level = float(np.median(levels))
    if combine:
        level = min(level, float(estimate_noise(v[chosen], bundle, pooled=True)))
    return level


def estimate_stack_noise(frames: Any, bundle: FibreBundle, *, values: Any = None) -> float:
    """:func:`estimate_video_noise` of a stack of TLI frames: registers it first.

    What ``cycsr super-resolve --project-noise video`` and the Super-resolve widget's "noise
    level from the video" compute for a stack of reconstructed (TLI) frames of one video.

    Parameters
    ----------
    frames : array_like, shape (T, H, W)
        The reconstructed frames (numpy or dask), at least 2.
    bundle : FibreBundle
        Their fibres.
    values : array_like, shape (T, N), optional
        Measured fibre values (default: the frames sampled at the fibre centres, exact for
        TLI frames).

    Returns
    -------
    float
        The noise standard deviation of the fibre values.

    Raises
    ------
    ValueError
        Not a stack of at least 2 frames, or a video that cannot be registered.
    """
    if np.ndim(frames) != 3 or np.shape(frames)[0] < 2:
        raise ValueError(
            f"the noise of a video needs a stack of at least 2 frames, got shape "
            f"{tuple(np.shape(frames))}"
        )
    if values is None:
        values = frame_values(frames, bundle, kind="reconstructed")
    return estimate_video_noise(values, bundle, register(frames, bundle))
