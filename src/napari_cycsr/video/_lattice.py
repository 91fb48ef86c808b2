"""The fibres of a reconstructed video without a raw frame: spacing, positions, gains.

A Cellvizio-type system delivers *reconstructed* frames: no raw camera frame, no core
positions. The cores are still there: they are the vertices of the interpolation, and they do
not move while the scene does. A triangulated linear interpolation (TLI) is linear inside
each triangle, so its Hessian vanishes there; along a triangle edge it has rank one (a crease
in one direction); only at the vertices (the cores) do creases of several directions meet, so
only there is the *determinant* of the Hessian large. Averaged over frames (the scene moves,
the vertices stay) ``sqrt|det H|`` is a map of bright spots at the cores: a "raw frame" made
from reconstructed video. Its spectrum gives the spacing, its peaks the positions.

The per-core gains (the fixed transmission pattern a background frame would remove) are
estimated from the video too (:func:`neighbour_gains` here, iterated with fusion in
:func:`napari_cycsr.video.estimate_gains`): each core's values against what its neighbours,
or the fused scene, say it should have measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..fibres import FibreBundle, bundle_fov, estimate_spacing
from ._common import check_bundle, check_frames, iter_frames

__all__ = ["estimate_lattice", "estimate_video_spacing", "neighbour_gains", "vertex_map"]

#: Hessian scales (px) whose spacing estimates are pooled (median).
_SIGMAS = (0.7, 0.9, 1.2, 1.6)


def _det_hessian(frame: np.ndarray, sigma: float) -> np.ndarray:
    f = frame.astype(np.float64, copy=False)
    yy = ndimage.gaussian_filter(f, sigma, order=(2, 0))
    xx = ndimage.gaussian_filter(f, sigma, order=(0, 2))
    xy = ndimage.gaussian_filter(f, sigma, order=(1, 1))
    return np.sqrt(np.abs(yy * xx - xy * xy))


def _sample(frames: Any, max_frames: int) -> list[int]:
    n = int(frames.shape[0])
    if n <= max_frames:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, max_frames)})


def vertex_map(frames: Any, *, sigma: float = 0.9, max_frames: int = 32) -> np.ndarray:
    """Temporal mean of ``sqrt|det Hessian|``: bright spots at the cores of a video.

    Parameters
    ----------
    frames : array_like, shape (T, H, W)
        Reconstructed (or raw) frames; numpy or dask. The scene must move between frames.
    sigma : float, optional
        Gaussian scale of the Hessian (px).
    max_frames : int, optional
        At most this many frames, evenly spread over the video, are used.

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    frames = check_frames(frames)
    idx = _sample(frames, max_frames)
    acc = np.zeros(frames.shape[1:], np.float64)
    for _, frame in iter_frames(frames, idx):
        acc += _det_hessian(frame, sigma)
    return (acc / len(idx)).astype(np.float32)


def _fov(frames: Any, mask: Any, idx: list[int]) -> np.ndarray:
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape != tuple(frames.shape[1:]):
            raise ValueError(f"mask must have the frames' shape {frames.shape[1:]}, got {m.shape}")
        return m
    mean = np.mean([f for _, f in iter_frames(frames, idx[:8])], axis=0)
    return bundle_fov(mean)


def estimate_video_spacing(frames: Any, *, mask: Any = None, max_frames: int = 32) -> float:
    """Core spacing of a video (raw or reconstructed) from the spectrum of its vertex map.

    The spacing of :func:`napari_cycsr.fibres.estimate_spacing` (the hexagonal lattice of
    the same core density) of :func:`vertex_map` at several Hessian scales; the median.

    Parameters
    ----------
    frames : array_like, shape (T, H, W)
        The video (at least 2 frames; the scene must move).
    mask : array_like of bool, shape (H, W), optional
        Field of view (default: the bright region of the mean frame).
    max_frames : int, optional
        Frames used (evenly spread).

    Returns
    -------
    float
        Spacing in px.

    Raises
    ------
    ValueError
        When no lattice shows (e.g. frames smoothed far beyond the core spacing).
    """
    frames = check_frames(frames)
    idx = _sample(frames, max_frames)
    fov = _fov(frames, mask, idx)
    stack = [f for _, f in iter_frames(frames, idx)]
    estimates = []
    for sigma in _SIGMAS:
        vmap = np.mean([_det_hessian(f, sigma) for f in stack], axis=0)
        try:
            estimates.append(estimate_spacing(vmap, mask=fov))
        except ValueError:
            continue
    if not estimates:
        raise ValueError(
            "no fibre lattice shows in the frames' spectrum; give the spacing (pixels between "
            "neighbouring cores) yourself"
        )
    return float(np.median(estimates))


def estimate_lattice(
    frames: Any,
    *,
    spacing: float | None = None,
    mask: Any = None,
    max_frames: int = 32,
) -> FibreBundle:
    """Fibre centres of a reconstructed video, found as the peaks of its vertex map.

    Parameters
    ----------
    frames : array_like, shape (T, H, W)
        Reconstructed (TLI-like) frames of a moving scene.
    spacing : float, optional
        Core spacing (px); default :func:`estimate_video_spacing`.
    mask : array_like of bool, shape (H, W), optional
        Field of view (default: the bright region of the mean frame).
    max_frames : int, optional
        Frames used (evenly spread).

    Returns
    -------
    FibreBundle
        The estimated cores. On simulated TLI video about three in four cores are found
        within half a pixel (docs/video.md gives the measured figures); cells of the missed
        cores are merged into their neighbours'.
    """
    frames = check_frames(frames, min_frames=2)
    idx = _sample(frames, max_frames)
    fov = _fov(frames, mask, idx)
    s = (
        estimate_video_spacing(frames, mask=fov, max_frames=max_frames)
        if spacing is None
        else float(spacing)
    )
    sigma = float(np.clip(0.2 * s, 0.7, 3.0))
    vmap = vertex_map(frames, sigma=sigma, max_frames=max_frames)
    inner = ndimage.binary_erosion(fov, iterations=max(1, int(round(s / 2))))
    return FibreBundle.detect(vmap, spacing=s, mask=inner)


def neighbour_gains(
    values: Any,
    bundle: FibreBundle,
    *,
    prediction: Any = None,
    rings: int = 2,
) -> np.ndarray:
    """Per-core gains from a prediction of what each core saw, or from its neighbours.

    The building block of :func:`napari_cycsr.video.estimate_gains`, which makes the
    prediction by fusing the registered video.

    Parameters
    ----------
    values : array_like, shape (T, N)
        Core values of the frames (not flat-fielded).
    bundle : FibreBundle
        The fibres.
    prediction : array_like, shape (T, N), optional
        What each core should have measured without its gain (e.g. the cell means of a
        fused scene moved into every frame). Then the gain of core ``k`` is the
        least-squares ratio ``sum_t v_tk p_tk / sum_t p_tk^2``. Without it, the gain is the
        core's temporal mean over the mean of the temporal means of its neighbours up to
        ``rings`` Delaunay rings away: right when the scene moves by more than a few core
        spacings over the video (each core then sees the same scene statistics).
    rings : int, optional
        Neighbourhood of the prediction-free estimate.

    Returns
    -------
    ndarray, shape (N,), float32
        Gains with median 1 (divide the values by them); cores that never saw light get 1.
    """
    bundle = check_bundle(bundle)
    v = np.asarray(values, np.float64)
    if v.ndim != 2 or v.shape[1] != bundle.n_fibres:
        raise ValueError(
            f"values must be (T, N) with N = {bundle.n_fibres} fibres, got shape {v.shape}"
        )
    if prediction is not None:
        p = np.asarray(prediction, np.float64)
        if p.shape != v.shape:
            raise ValueError(f"prediction must have the values' shape {v.shape}, got {p.shape}")
        ok = np.isfinite(p) & np.isfinite(v)
        p0 = np.where(ok, p, 0.0)
        num = (np.where(ok, v, 0.0) * p0).sum(axis=0)
        den = (p0 * p0).sum(axis=0)
        gains = np.where(den > 0, num / np.maximum(den, 1e-30), np.nan)
    else:
        mean = v.mean(axis=0)
        adj = _adjacency(bundle)
        reach = adj.copy()
        for _ in range(max(1, int(rings)) - 1):
            reach = reach + reach @ adj
        reach = (reach > 0).astype(np.float64)
        reach.setdiag(0.0)
        counts = np.asarray(reach.sum(axis=1)).ravel()
        local = (reach @ mean) / np.maximum(counts, 1)
        gains = np.where(local > 0, mean / np.where(local > 0, local, 1.0), np.nan)
    good = np.isfinite(gains) & (gains > 0)
    if not good.any():
        return np.ones(bundle.n_fibres, np.float32)
    gains = gains / np.median(gains[good])
    gains[~good] = 1.0
    return gains.astype(np.float32)


def _adjacency(bundle: FibreBundle) -> Any:
    import scipy.sparse as sp
    from scipy.spatial import Delaunay

    tri = Delaunay(bundle.centres).simplices
    i = np.concatenate([tri[:, 0], tri[:, 1], tri[:, 2], tri[:, 1], tri[:, 2], tri[:, 0]])
    j = np.concatenate([tri[:, 1], tri[:, 2], tri[:, 0], tri[:, 0], tri[:, 1], tri[:, 2]])
    n = bundle.n_fibres
    adj = sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    adj.data[:] = 1.0
    return adj
