"""Synthetic probe-based confocal endomicroscopy (pCLE) with a known ground truth.

A high-resolution (HR) grey image is "imaged through a fibre bundle": a jittered hexagonal
lattice of fibre cores is laid over the image grid, each fibre measures the mean of the HR
image over its Voronoi cell (or a Gaussian-weighted mean around its centre), the measurement
is corrupted by optional gain non-uniformity, Poisson and Gaussian noise, and the usual
low-resolution (LR) display image is the triangulated linear interpolation (TLI) of the
noisy fibre values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ._validate import as_grey, as_real_array, as_shape, to_unit_float
from .fibres import FibreBundle

__all__ = [
    "DEFAULT_SPACING",
    "PCLESimulation",
    "PCLEVideo",
    "hexagonal_lattice",
    "simulate_pcle",
    "simulate_pcle_video",
]

#: Hexagonal spacing (px) that gives one fibre per 6 pixels: (sqrt(3)/2) s^2 = 6
#: (682 fibres on a full 64x64 patch, as in Ravi et al.).
DEFAULT_SPACING: float = float(np.sqrt(12.0 / np.sqrt(3.0)))


def hexagonal_lattice(
    shape: tuple[int, int],
    spacing: float,
    *,
    jitter: float = 0.1,
    fov: str = "circle",
    seed: int | np.random.SeedSequence | None = 0,
) -> np.ndarray:
    """Fibre centres on a jittered hexagonal lattice covering an image grid.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the image grid.
    spacing : float
        Distance between neighbouring lattice sites, in pixels (> 0.5).
    jitter : float, optional
        Standard deviation of an isotropic Gaussian displacement of each site, as a fraction
        of ``spacing`` (0 gives a perfect lattice). Default 0.1.
    fov : {"circle", "full"}, optional
        ``"circle"``: keep the centres inside the circle inscribed in the image (a round
        bundle); ``"full"``: keep every centre inside the image extent
        ``[-0.5, H - 0.5] x [-0.5, W - 0.5]``.
    seed : int, numpy.random.SeedSequence or None, optional
        Seed of ``numpy.random.default_rng``; it also draws a random offset of the lattice
        within one lattice cell. Same seed, same centres.

    Returns
    -------
    ndarray, shape (N, 2), float64
        ``(y, x)`` centres.

    Examples
    --------
    >>> c = hexagonal_lattice((64, 64), 2.632, fov="full")
    >>> 640 < len(c) < 720
    True
    """
    h, w = as_shape(shape)
    spacing = float(spacing)
    if not np.isfinite(spacing) or spacing <= 0.5:
        raise ValueError(f"spacing must be a finite number of pixels > 0.5, got {spacing!r}")
    jitter = float(jitter)
    if not np.isfinite(jitter) or jitter < 0:
        raise ValueError(f"jitter must be a non-negative fraction of spacing, got {jitter!r}")
    if fov not in ("circle", "full"):
        raise ValueError(f"fov must be 'circle' or 'full', got {fov!r}")
    rng = np.random.default_rng(seed)
    row_step = spacing * np.sqrt(3.0) / 2.0
    off_y, off_x = rng.uniform(0.0, 1.0, size=2) * (row_step, spacing)
    rows = np.arange(-2, int(np.ceil(h / row_step)) + 3)
    cols = np.arange(-2, int(np.ceil(w / spacing)) + 3)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    y = rr * row_step + off_y - 0.5
    x = cc * spacing + (rr % 2) * (spacing / 2.0) + off_x - 0.5
    pts = np.column_stack([y.ravel(), x.ravel()])
    if jitter > 0:
        pts = pts + rng.normal(0.0, jitter * spacing, size=pts.shape)
    if fov == "full":
        keep = (
            (pts[:, 0] >= -0.5) & (pts[:, 0] <= h - 0.5) & (pts[:, 1] >= -0.5)
            & (pts[:, 1] <= w - 0.5)
        )  # fmt: skip
    else:
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        radius = min(h, w) / 2.0
        keep = (pts[:, 0] - cy) ** 2 + (pts[:, 1] - cx) ** 2 <= radius**2
        keep &= (pts[:, 0] >= -0.5) & (pts[:, 0] <= h - 0.5)
        keep &= (pts[:, 1] >= -0.5) & (pts[:, 1] <= w - 0.5)
    return np.ascontiguousarray(pts[keep])


@dataclass
class PCLESimulation:
    """Result of :func:`simulate_pcle`.

    Attributes
    ----------
    hr : ndarray, shape (H, W), float32
        The input image as float32 in [0, 1] (see :func:`simulate_pcle`), full frame.
    lr : ndarray, shape (H, W), float32
        TLI reconstruction of the noisy fibre values (zero outside the hull of the centres).
    bundle : FibreBundle
        The simulated fibre bundle.
    values : ndarray, shape (N,), float32
        Measured (noisy) fibre values.
    clean_values : ndarray, shape (N,), float32
        Noise-free fibre values (cell means, or Gaussian core responses).
    """

    hr: np.ndarray
    lr: np.ndarray
    bundle: FibreBundle
    values: np.ndarray
    clean_values: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool field of view of the bundle."""
        return self.bundle.fov_mask


def _to_unit_float(image: Any) -> np.ndarray:
    """The ground-truth image as float32 in [0, 1] (the package's one rule, see
    :func:`napari_cycsr._validate.to_unit_float`)."""
    arr = as_grey(as_real_array(image, "hr"), name="hr")
    if arr.ndim != 2:
        raise ValueError(f"hr must be a 2-D grey image (H, W), got shape {arr.shape}")
    return to_unit_float(arr, name="hr")


def simulate_pcle(
    hr: Any,
    *,
    spacing: float | None = None,
    jitter: float = 0.1,
    noise: float = 0.01,
    fov: str = "circle",
    seed: int | None = 0,
    core_sigma: float | None = None,
    gain_sd: float = 0.0,
    poisson_peak: float | None = None,
) -> PCLESimulation:
    """Simulate imaging a grey image through a fibre bundle (pCLE).

    Parameters
    ----------
    hr : array_like, shape (H, W)
        Grey high-resolution image. Unsigned integers are divided by their dtype maximum
        (uint8 -> /255); floats already in [0, 1] are kept; any other real image (signed
        ints, floats outside [0, 1]) is min-max rescaled to [0, 1]. RGB is refused.
    spacing : float, optional
        Hexagonal fibre spacing in pixels. Default :data:`DEFAULT_SPACING` (about 2.63 px,
        one fibre per 6 pixels).
    jitter : float, optional
        Lattice jitter as a fraction of spacing (see :func:`hexagonal_lattice`).
    noise : float, optional
        Standard deviation of additive Gaussian noise on the fibre values (images in [0, 1]).
    fov : {"circle", "full"}, optional
        Bundle shape (see :func:`hexagonal_lattice`).
    seed : int or None, optional
        Seed; the same seed gives the same lattice and noise.
    core_sigma : float, optional
        When given, a fibre measures the Gaussian-weighted mean of the image around its
        centre (standard deviation ``core_sigma`` px) instead of its Voronoi cell mean.
    gain_sd : float, optional
        Standard deviation of a multiplicative per-fibre gain ``1 + gain_sd * N(0, 1)``
        (core-to-core transmission non-uniformity). Default 0.
    poisson_peak : float, optional
        When given, the values are photon counts ``Poisson(value * poisson_peak) /
        poisson_peak`` (shot noise; smaller peak = noisier), before the Gaussian noise.

    Returns
    -------
    PCLESimulation
        ``hr``, ``lr``, ``bundle``, ``values`` (noisy, not clipped) and ``clean_values``.

    Examples
    --------
    >>> from skimage import data
    >>> sim = simulate_pcle(data.camera()[:128, :128], seed=3)
    >>> sim.lr.shape, sim.lr.dtype.name
    ((128, 128), 'float32')
    """
    img = _to_unit_float(hr)
    spacing = DEFAULT_SPACING if spacing is None else float(spacing)
    for name, val in (("noise", noise), ("gain_sd", gain_sd)):
        if not np.isfinite(val) or val < 0:
            raise ValueError(f"{name} must be a non-negative number, got {val!r}")
    if core_sigma is not None and not (np.isfinite(core_sigma) and core_sigma > 0):
        raise ValueError(f"core_sigma must be a positive number of pixels, got {core_sigma!r}")
    if poisson_peak is not None and not (np.isfinite(poisson_peak) and poisson_peak > 0):
        raise ValueError(f"poisson_peak must be a positive number, got {poisson_peak!r}")
    lattice_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    centres = hexagonal_lattice(img.shape, spacing, jitter=jitter, fov=fov, seed=lattice_seed)
    if len(centres) < 3:
        raise ValueError(
            f"the image {img.shape} is too small for fibres {spacing:g} px apart "
            f"({len(centres)} fibre(s))"
        )
    bundle = FibreBundle(centres, img.shape)
    if core_sigma is None:
        clean = bundle.vectorize(img).astype(np.float64)
        empty = ~np.isfinite(clean)
        if empty.any():  # a cell without pixel: fall back to the value at its centre
            clean[empty] = bundle.sample(img, method="bilinear")[empty]
    else:
        smooth = ndimage.gaussian_filter(img.astype(np.float64), core_sigma, mode="nearest")
        clean = ndimage.map_coordinates(smooth, bundle.centres.T, order=1, mode="nearest")
    rng = np.random.default_rng(noise_seed)
    values = clean.copy()
    if gain_sd > 0:
        values = values * (1.0 + gain_sd * rng.standard_normal(values.shape))
    if poisson_peak is not None:
        values = rng.poisson(np.clip(values, 0.0, None) * poisson_peak) / poisson_peak
    if noise > 0:
        values = values + rng.normal(0.0, noise, size=values.shape)
    values = values.astype(np.float32)
    lr = bundle.reconstruct(values)
    return PCLESimulation(
        hr=img, lr=lr, bundle=bundle, values=values, clean_values=clean.astype(np.float32)
    )


@dataclass
class PCLEVideo:
    """Result of :func:`simulate_pcle_video`: a synthetic pCLE video with its ground truth.

    The fibre bundle is fixed on the frame grid; the scene moves behind it. Frame ``t`` sees
    the scene point that sits at ``q`` in the reference frame at
    ``R(angle_t) (q - c) + c + shift_t`` (``c`` the frame centre, ``R`` a rotation of the
    ``(y, x)`` plane), so for a pure translation at ``q + shift_t``: the convention of
    :func:`napari_cycsr.video.register`.

    Attributes
    ----------
    scene : ndarray, shape (Hs, Ws), float32
        The whole ground-truth image the frames are windows of.
    frames : ndarray, shape (T, H, W), float32
        The noise-free scene as each frame sees it, on the frame grid (the truth behind
        frame ``t``).
    lr : ndarray, shape (T, H, W), float32
        TLI reconstruction of each frame's measured fibre values.
    shifts : ndarray, shape (T, 2), float64
        True ``(dy, dx)`` of each frame relative to the reference frame.
    angles : ndarray, shape (T,), float64
        True rotation of each frame relative to the reference frame (radians, positive from
        the y axis towards the x axis); zeros without rotation.
    bundle : FibreBundle
        The fibre bundle (on the frame grid).
    values : ndarray, shape (T, N), float32
        Measured fibre values: cell means times the per-core gains, plus noise.
    clean_values : ndarray, shape (T, N), float32
        Noise-free cell means (no gains, no noise).
    gains : ndarray, shape (N,), float32
        Per-core transmission gains (all 1 when ``gain_sd`` is 0).
    origin : ndarray, shape (2,), float64
        Scene coordinates of the reference frame's pixel ``(0, 0)``.
    reference : int
        Index of the reference frame (its shift and angle are zero).
    raw : ndarray, shape (T, H, W), float32, or None
        Raw camera frames (one Gaussian spot per core, dark cladding) when asked for.
    background : ndarray, shape (H, W), float32, or None
        The raw frame of a uniform scene (flat field), with ``raw``.
    """

    scene: np.ndarray
    frames: np.ndarray
    lr: np.ndarray
    shifts: np.ndarray
    angles: np.ndarray
    bundle: FibreBundle
    values: np.ndarray
    clean_values: np.ndarray
    gains: np.ndarray
    origin: np.ndarray
    reference: int = 0
    raw: np.ndarray | None = None
    background: np.ndarray | None = None

    @property
    def hr(self) -> np.ndarray:
        """(H, W) float32: the truth behind the reference frame."""
        return self.frames[self.reference]

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool field of view of the bundle."""
        return self.bundle.fov_mask


def _rotation(angle: float) -> np.ndarray:
    """2x2 matrix rotating ``(y, x)`` vectors by ``angle`` (y towards x)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, s], [-s, c]])


def _render_spots(
    centres: np.ndarray, amplitudes: np.ndarray, shape: tuple[int, int], sigma: float
) -> np.ndarray:
    """Sum of one Gaussian spot per core (sub-pixel exact), stacked over leading axes."""
    h, w = shape
    amp = np.atleast_2d(np.asarray(amplitudes, np.float64))
    r = int(np.ceil(3.0 * sigma))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    base = np.rint(centres).astype(np.int64)
    py = base[:, 0:1] + dy.ravel()[None, :]
    px = base[:, 1:2] + dx.ravel()[None, :]
    weight = np.exp(-((py - centres[:, 0:1]) ** 2 + (px - centres[:, 1:2]) ** 2) / (2.0 * sigma**2))
    keep = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    flat = (py * w + px)[keep]
    out = np.empty((amp.shape[0], h * w))
    for i, a in enumerate(amp):
        out[i] = np.bincount(flat, (weight * a[:, None])[keep], minlength=h * w)
    return out.reshape(amp.shape[0], h, w)


def simulate_pcle_video(
    hr: Any,
    n_frames: int,
    *,
    shape: tuple[int, int] | None = None,
    step: float = 0.7,
    drift: tuple[float, float] = (0.0, 0.0),
    rotation: float = 0.0,
    shifts: Any = None,
    spacing: float | None = None,
    jitter: float = 0.1,
    noise: float = 0.01,
    gain_sd: float = 0.0,
    poisson_peak: float | None = None,
    fov: str = "circle",
    raw: bool = False,
    core_sigma: float | None = None,
    seed: int | None = 0,
) -> PCLEVideo:
    """Simulate a pCLE video: a scene moving behind a fixed fibre bundle.

    The reference frame (frame 0) looks at the centre of ``hr``; every later frame is moved
    by a random walk (or by the ``shifts`` given). Each frame's truth is the scene resampled
    at its position (cubic spline); each fibre measures the mean of that truth over its
    Voronoi cell, times its fixed gain, plus noise; the displayed frame is the TLI of the
    measured values.

    Parameters
    ----------
    hr : array_like, shape (Hs, Ws)
        Grey scene, larger than the frames by the extent of the motion (rules of
        :func:`simulate_pcle` for the intensity scale).
    n_frames : int
        Number of frames ``T`` (>= 1).
    shape : tuple of int, optional
        ``(H, W)`` of the frames. Default: the scene minus a margin on each side that holds
        the motion (the largest displacement of any frame corner plus 4 px).
    step : float, optional
        Standard deviation (px, per axis) of the frame-to-frame displacement of the random
        walk. Default 0.7 (sub-pixel and pixel steps).
    drift : tuple of float, optional
        Constant ``(dy, dx)`` added to every step (px per frame). Default none.
    rotation : float, optional
        Standard deviation (radians) of the frame-to-frame rotation of the random walk
        about the frame centre. Default 0 (translation only).
    shifts : array_like, shape (T, 2), optional
        Use these ``(dy, dx)`` instead of the random walk (``step``, ``drift`` and
        ``rotation`` ignored; frame 0 must be at ``(0, 0)``).
    spacing, jitter, noise, gain_sd, poisson_peak, fov
        As :func:`simulate_pcle`. The gains are ``1 + gain_sd * N(0, 1)`` clipped to
        ``>= 0.1``, fixed for the whole video; noise is drawn anew for every frame.
    raw : bool, optional
        Also render raw camera frames (one Gaussian spot per core of amplitude
        ``0.85 * gain * (0.1 + 0.9 * value)``, plus ``noise``) and their flat-field
        background frame.
    core_sigma : float, optional
        Width of the raw spots (px). Default ``0.2 * spacing``.
    seed : int or None, optional
        Seed of every random choice (lattice, motion, gains, noise).

    Returns
    -------
    PCLEVideo

    Examples
    --------
    >>> from skimage import data
    >>> vid = simulate_pcle_video(data.camera()[:160, :160], 4, seed=1)
    >>> vid.lr.shape[0], vid.shifts.shape, bool((vid.shifts[0] == 0).all())
    (4, (4, 2), True)
    """
    scene = _to_unit_float(hr)
    n_frames = int(n_frames)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    for name, val in (("noise", noise), ("gain_sd", gain_sd), ("step", step)):
        if not np.isfinite(val) or val < 0:
            raise ValueError(f"{name} must be a non-negative number, got {val!r}")
    if not np.isfinite(rotation) or rotation < 0:
        raise ValueError(f"rotation must be a non-negative number of radians, got {rotation!r}")
    if poisson_peak is not None and not (np.isfinite(poisson_peak) and poisson_peak > 0):
        raise ValueError(f"poisson_peak must be a positive number, got {poisson_peak!r}")
    spacing = DEFAULT_SPACING if spacing is None else float(spacing)
    lattice_seed, motion_seed, gain_seed, noise_seed = np.random.SeedSequence(seed).spawn(4)
    rng = np.random.default_rng(motion_seed)
    if shifts is not None:
        motion = np.asarray(shifts, dtype=np.float64)
        if motion.shape != (n_frames, 2) or not np.isfinite(motion).all():
            raise ValueError(
                f"shifts must be finite with shape ({n_frames}, 2), got {motion.shape}"
            )
        if np.any(motion[0] != 0):
            raise ValueError("shifts[0] must be (0, 0): frame 0 is the reference")
        angles = np.zeros(n_frames)
    else:
        steps = rng.normal(0.0, step, size=(n_frames, 2)) + np.asarray(drift, np.float64)
        steps[0] = 0.0
        motion = np.cumsum(steps, axis=0)
        turns = rng.normal(0.0, rotation, size=n_frames) if rotation > 0 else np.zeros(n_frames)
        turns[0] = 0.0
        angles = np.cumsum(turns)
    hs, ws = scene.shape
    if shape is None:
        # margin: the largest displacement of a frame corner (rotation about the centre)
        half = np.array([hs, ws], np.float64) / 2.0
        reach = np.abs(motion).max(axis=0) + np.max(np.abs(np.sin(angles))) * half[::-1]
        margin = np.ceil(reach + 4.0).astype(int)
        shape = (hs - 2 * int(margin[0]), ws - 2 * int(margin[1]))
        if min(shape) < 16:
            raise ValueError(
                f"the scene {scene.shape} is too small for this motion: frames of {shape} "
                "would remain; give a larger scene or smaller steps"
            )
    h, w = as_shape(shape)
    origin = np.array([(hs - h) / 2.0, (ws - w) / 2.0])
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    pix = np.stack([yy.ravel(), xx.ravel()], axis=1)
    coeffs = ndimage.spline_filter(scene.astype(np.float64), order=3, mode="mirror")
    truth = np.empty((n_frames, h, w), dtype=np.float32)
    for t in range(n_frames):
        # frame pixel p sees reference point q = R(-a) (p - c - s) + c (scene: q + origin)
        q = (pix - centre - motion[t]) @ _rotation(angles[t]) + centre + origin
        lo = q.min(axis=0)
        hi = q.max(axis=0)
        if lo.min() < -0.5 or hi[0] > hs - 0.5 or hi[1] > ws - 0.5:
            raise ValueError(
                f"frame {t} (shift {motion[t].round(2).tolist()}) leaves the scene "
                f"{scene.shape}; give a larger scene, a smaller shape or smaller steps"
            )
        truth[t] = ndimage.map_coordinates(
            coeffs, q.T, order=3, mode="mirror", prefilter=False
        ).reshape(h, w)
    np.clip(truth, 0.0, 1.0, out=truth)
    centres = hexagonal_lattice((h, w), spacing, jitter=jitter, fov=fov, seed=lattice_seed)
    if len(centres) < 3:
        raise ValueError(f"frames of {(h, w)} are too small for fibres {spacing:g} px apart")
    bundle = FibreBundle(centres, (h, w))
    clean = bundle.vectorize(truth).astype(np.float64)
    empty = ~np.isfinite(clean)
    if empty.any():  # a cell without pixel: its bilinear value
        clean = np.where(empty, bundle.sample(truth, method="bilinear"), clean)
    gains = np.ones(bundle.n_fibres)
    if gain_sd > 0:
        gains = np.clip(
            1.0 + gain_sd * np.random.default_rng(gain_seed).standard_normal(bundle.n_fibres),
            0.1,
            None,
        )
    noise_rng = np.random.default_rng(noise_seed)
    values = clean * gains
    if poisson_peak is not None:
        values = noise_rng.poisson(np.clip(values, 0.0, None) * poisson_peak) / poisson_peak
    if noise > 0:
        values = values + noise_rng.normal(0.0, noise, size=values.shape)
    values = values.astype(np.float32)
    raw_frames = background = None
    if raw:
        sigma = 0.2 * spacing if core_sigma is None else float(core_sigma)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"core_sigma must be a positive number of pixels, got {core_sigma!r}")
        peak = 0.85 * gains
        background = _render_spots(bundle.centres, peak, (h, w), sigma)[0]
        raw_frames = _render_spots(bundle.centres, peak * (0.1 + 0.9 * clean), (h, w), sigma)
        if noise > 0:
            background = background + noise_rng.normal(0.0, noise, size=background.shape)
            raw_frames = raw_frames + noise_rng.normal(0.0, noise, size=raw_frames.shape)
        background = np.clip(background, 0.0, 1.0).astype(np.float32)
        raw_frames = np.clip(raw_frames, 0.0, 1.0).astype(np.float32)
    return PCLEVideo(
        scene=scene,
        frames=truth,
        lr=bundle.reconstruct(values),
        shifts=motion,
        angles=angles,
        bundle=bundle,
        values=values,
        clean_values=clean.astype(np.float32),
        gains=gains.astype(np.float32),
        origin=origin,
        raw=raw_frames,
        background=background,
    )
