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

__all__ = ["DEFAULT_SPACING", "PCLESimulation", "hexagonal_lattice", "simulate_pcle"]

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
