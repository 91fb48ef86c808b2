"""Core detection on raw fibre-bundle frames: the bundle's disc, the core spacing, the cores.

A raw camera frame of a coherent fibre bundle shows every fibre core as a bright spot on dark
cladding, inside a round field of view. This module finds

* :func:`bundle_fov`: the bundle's disc, from the energy of the core pattern (not from the
  brightness, so dark scene content and a grey, noisy surround do not change it), with holes
  filled and bites at the edge closed by the disc's circle;
* :func:`estimate_spacing`: the core-to-core spacing from the Fourier power spectrum;
* :func:`detect_cores`: the sub-pixel core centres inside the disc, checked to form a
  regular lattice (uniform or Gaussian noise is refused: "no fibre bundle found").

:meth:`napari_cycsr.fibres.FibreBundle.detect` wraps :func:`detect_cores`; ``bundle_fov``
and ``estimate_spacing`` stay importable from :mod:`napari_cycsr.fibres` too.

This module imports neither torch nor Qt, and nothing from :mod:`napari_cycsr.fibres`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ._validate import as_frame

__all__ = [
    "NoBundleFound",
    "Detection",
    "bundle_fov",
    "detect_cores",
    "estimate_spacing",
    "lattice_map",
    "lattice_regularity",
]

ArrayLike = Any

#: A detection whose cores' nearest-neighbour distances lie within 30 % of their median for
#: fewer than this fraction of the cores is not a fibre bundle (measured: the real frames
#: 0.985-1.000, uniform noise 0.34, Gaussian noise 0.59; see docs/fibres.md).
MIN_REGULARITY = 0.8

#: Without a background, a field of view smaller than this fraction of the frame is reported.
SMALL_FOV_FRACTION = 0.2


class NoBundleFound(ValueError):
    """The frame shows no fibre bundle (no regular lattice of bright cores)."""


@dataclass(frozen=True)
class Detection:
    """Result of :func:`detect_cores`.

    Attributes
    ----------
    centres : ndarray, shape (N, 2)
        Sub-pixel ``(y, x)`` core centres, sorted, unique.
    spacing : float
        The core spacing used (px; Fourier estimate of the hexagonal-lattice spacing unless
        given).
    fov : ndarray, shape (H, W), bool
        The bundle's disc the cores were searched in.
    regularity : float
        Fraction of cores whose nearest-neighbour distance is within 30 % of the median.
    """

    centres: np.ndarray
    spacing: float
    fov: np.ndarray
    regularity: float


def _frame(image: ArrayLike, name: str) -> np.ndarray:
    """A raw frame as a float64 copy: 2-D, grey, finite, at least 8x8 (see ``as_frame``)."""
    return as_frame(image, name=name, min_size=8)


def _default_fov_sigma(shape: tuple[int, ...]) -> float:
    return max(8.0, max(shape) / 100.0)


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values))


def _brightness_disc(img: np.ndarray, sigma: float) -> np.ndarray | None:
    """The bright region of a frame with a dark surround (None: no dark surround)."""
    smooth = ndimage.gaussian_filter(img, sigma)
    if smooth.max() <= smooth.min():
        return None
    bright = smooth > _otsu(smooth)
    if not (~bright).any() or smooth[~bright].mean() > 0.5 * smooth[bright].mean():
        return None
    return _largest_filled(bright)


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(lab == int(sizes.argmax()))


def _band(img: np.ndarray, spacing: float) -> np.ndarray:
    """Band-pass at the core scale (difference of Gaussians of 0.25 and 0.7 spacings)."""
    return ndimage.gaussian_filter(img, 0.25 * spacing) - ndimage.gaussian_filter(
        img, 0.7 * spacing
    )


def _pattern_energy(img: np.ndarray, spacing: float) -> np.ndarray:
    """Local energy of the core pattern: band-pass at the core scale, squared, smoothed."""
    band = _band(img, spacing)
    return ndimage.gaussian_filter(band * band, 1.5 * spacing)


def lattice_map(raw: ArrayLike, spacing: float) -> np.ndarray:
    """Where a frame shows a lattice of cores rather than noise: a local band-energy ratio.

    The energy of the frame band-passed at the core scale (difference of Gaussians of 0.25
    and 0.7 spacings) over the energy of its finest detail (the frame minus a Gaussian of
    0.6 px), both averaged locally (Gaussian of 1.5 spacings), as a base-10 logarithm. A
    lattice of cores puts its energy in the band whatever its brightness; white noise (a
    grey, noisy surround, or the camera noise of a black one) puts most of it in the finest
    detail. It is used only to split a frame without a dark surround into the bundle and a
    noisy surround (Otsu's threshold on the map, accepted when the two classes differ by more
    than 0.5): the values themselves depend on the core size and the camera (measured
    medians: -0.27 inside a real bundle, -0.29 on white noise, +0.02 inside a simulated one;
    the split works because they differ *within* one frame).

    Parameters
    ----------
    raw : array_like, shape (H, W)
    spacing : float
        Core spacing (px), e.g. :func:`estimate_spacing`.

    Returns
    -------
    ndarray, shape (H, W), float64
    """
    img = _frame(raw, "raw")
    spacing = float(spacing)
    band = _band(img, spacing)
    fine = img - ndimage.gaussian_filter(img, 0.6)
    num = ndimage.gaussian_filter(band * band, 1.5 * spacing)
    den = ndimage.gaussian_filter(fine * fine, 1.5 * spacing)
    floor = 1e-12 * max(float(num.max()), float(den.max()), 1e-300)
    out = np.log10(np.maximum(num, floor) / np.maximum(den, floor))
    out[num <= 1e3 * floor] = -12.0  # no pattern at all (an exactly flat, e.g. black, region)
    return out


def _complete_disc(mask: np.ndarray) -> np.ndarray:
    """Close bites and holes of a round region: its convex hull, widened to the circle fitted
    to the hull's vertices when they lie on one (a bundle's face is round)."""
    from skimage.measure import find_contours
    from skimage.morphology import convex_hull_image

    if mask.sum() < 16:
        return mask
    hull = convex_hull_image(mask)
    contours = find_contours(np.pad(hull, 1).astype(np.float32), 0.5)
    if not contours:
        return hull
    pts = max(contours, key=len) - 1.0
    h, w = mask.shape
    inner = (pts[:, 0] > 1) & (pts[:, 0] < h - 2) & (pts[:, 1] > 1) & (pts[:, 1] < w - 2)
    pts = pts[inner]
    if len(pts) < 20:
        return hull
    fit = _fit_circle(pts)
    if fit is None:
        return hull
    cy, cx, r = fit
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 0.5) ** 2
    return disc | hull


def _fit_circle(pts: np.ndarray) -> tuple[float, float, float] | None:
    """Circle through the points of a round outline whose chords (bites) lie inside it.

    Algebraic (Kasa) fit, repeated without the points more than 3 px inside the circle (a
    chord across a bite); accepted when at least half the points lie within
    ``max(2, 0.01 r)`` px of it. Returns ``(cy, cx, r)`` or None.
    """
    use = np.ones(len(pts), dtype=bool)
    for _ in range(5):
        if use.sum() < 20:
            return None
        p = pts[use]
        a = np.column_stack([p[:, 1], p[:, 0], np.ones(len(p))])
        b = -(p[:, 1] ** 2 + p[:, 0] ** 2)
        (d, e, f), *_ = np.linalg.lstsq(a, b, rcond=None)
        cx, cy = -d / 2, -e / 2
        r2 = cx * cx + cy * cy - f
        if not np.isfinite(r2) or r2 <= 0:
            return None
        r = float(np.sqrt(r2))
        resid = np.hypot(pts[:, 1] - cx, pts[:, 0] - cy) - r
        new = resid > -3.0
        if np.array_equal(new, use):
            break
        use = new
    close = np.abs(resid) <= max(2.0, 0.01 * r)
    if close.mean() < 0.5:
        return None
    return float(cy), float(cx), r


def bundle_fov(
    raw: ArrayLike, *, sigma: float | None = None, spacing: float | None = None
) -> np.ndarray:
    """Field of view of a fibre bundle on a raw camera frame: the bundle's (round) face.

    The face is where the core pattern is: the frame is band-passed at the core scale, squared
    and smoothed (the local energy of the pattern), and the energy is split in two classes
    by Otsu's method on its logarithm. The largest connected region, its holes filled, is
    completed to the circle fitted to its convex hull when the hull is round (bites where
    dark scene content touches the edge are closed; a bundle cut by the frame's border stays
    cut). A frame without a core pattern falls back to the bright region of the heavily
    smoothed frame; a frame filled by the bundle gives the whole frame.

    Parameters
    ----------
    raw : array_like, shape (H, W)
        Raw frame (a background / flat-field frame works best).
    sigma : float, optional
        Smoothing (px) of the brightness fallback; default 1 % of the larger image side but
        at least 8 px.
    spacing : float, optional
        Core spacing (px); default :func:`estimate_spacing` of the frame's bright region.

    Returns
    -------
    ndarray, shape (H, W), bool
    """
    img = _frame(raw, "raw")
    sigma = _default_fov_sigma(img.shape) if sigma is None else float(sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
    rough = _brightness_disc(img, sigma)
    if spacing is None:
        try:
            spacing = _spacing(img, rough if rough is not None else np.ones(img.shape, bool))
        except ValueError:
            return rough if rough is not None else np.ones(img.shape, dtype=bool)
    spacing = float(spacing)
    face = np.ones(img.shape, dtype=bool)
    split = False
    energy = _pattern_energy(img, spacing)
    positive = energy > 0
    if positive.sum() >= 16:
        log_e = np.log10(np.where(positive, energy, energy[positive].min()))
        inside = log_e > _otsu(log_e)
        split_ok = inside.any() and (~inside).any()
        if split_ok and np.median(log_e[inside]) - np.median(log_e[~inside]) > 2.0:
            # the pattern's energy falls by orders of magnitude somewhere (a dark surround,
            # or dark scene content): the face ends where it falls below a quarter of its
            # typical level (the smoothing spreads the edge: half the level lies on the
            # outermost row of cores)
            face = log_e > np.median(log_e[inside]) - np.log10(4.0)
            split = True
    # where the frame shows a lattice rather than noise (a grey, noisy surround)
    ratio = lattice_map(img, spacing)
    lattice = ratio > _otsu(ratio)
    split_ok = lattice.any() and (~lattice).any()
    if split_ok and np.median(ratio[lattice]) - np.median(ratio[~lattice]) > 0.5:
        face &= lattice
        split = True
    if not split or face.mean() > 0.98:
        return np.ones(img.shape, dtype=bool)
    if face.sum() < 16:
        return rough if rough is not None else np.ones(img.shape, dtype=bool)
    return _complete_disc(_largest_filled(face))


def _spectrum_score(img: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    hp = (img - ndimage.gaussian_filter(img, 8.0)) * m
    power = np.abs(np.fft.rfft2(hp)) ** 2
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.rfftfreq(img.shape[1])[None, :]
    freq = np.hypot(fy, fx).ravel()
    n_bins = max(64, min(img.shape) // 2)
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    idx = np.digitize(freq, edges) - 1
    ok = idx < n_bins
    counts = np.bincount(idx[ok], minlength=n_bins)
    prof = np.bincount(idx[ok], power.ravel()[ok], minlength=n_bins) / np.maximum(counts, 1)
    fc = 0.5 * (edges[1:] + edges[:-1])
    score = np.where(fc > 1.0 / 30.0, prof * fc**2, 0.0)
    return score, fc, float(edges[1] - edges[0])


def _spacing(img: np.ndarray, m: np.ndarray) -> float:
    score, fc, step = _spectrum_score(img, m)
    n_bins = len(score)
    if not np.any(score > 0):
        raise NoBundleFound("cannot estimate the core spacing: the frame shows no periodic pattern")
    k = int(np.argmax(score))
    # parabolic refinement of the peak position
    if 0 < k < n_bins - 1 and score[k - 1] > 0 and score[k + 1] > 0:
        a, b, c = score[k - 1], score[k], score[k + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        f0 = fc[k] + float(np.clip(shift, -0.5, 0.5)) * step
    else:
        f0 = fc[k]
    return float(2.0 / (np.sqrt(3.0) * f0))


def estimate_spacing(raw: ArrayLike, *, mask: ArrayLike | None = None) -> float:
    """Core-to-core spacing of a fibre bundle frame from its Fourier power spectrum.

    The frame is high-passed (minus a Gaussian blur of 8 px), restricted to ``mask``, and the
    radially averaged power spectrum, whitened by ``f**2`` so that image content (which falls
    off about as ``1/f**2``) does not win, is searched for its peak ``f0`` between 1/30 and
    1/2 cycles per pixel. For a hexagonal lattice the first ring of the spectrum lies at
    ``f0 = 2 / (sqrt(3) s)``, so the spacing returned is ``s = 2 / (sqrt(3) f0)``: the
    spacing of the hexagonal lattice with the same density of cores. On real, disordered
    bundles the median nearest-neighbour distance of the cores is about 0.85 of it.

    Parameters
    ----------
    raw : array_like, shape (H, W)
        Raw bundle frame.
    mask : array_like of bool, shape (H, W), optional
        Region to analyse (default: :func:`bundle_fov`).

    Returns
    -------
    float
        Spacing in pixels.
    """
    img = _frame(raw, "raw")
    m = bundle_fov(img) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != img.shape:
        raise ValueError(f"mask must have the frame's shape {img.shape}, got {m.shape}")
    return _spacing(img, m)


def _noise_sd(frame: np.ndarray, mask: np.ndarray) -> float:
    """Robust estimate of the pixel noise standard deviation inside ``mask``.

    Median absolute response to the 3x3 kernel ``[[1,-2,1],[-2,4,-2],[1,-2,1]]`` (which
    cancels planes and is orthogonal to smooth structure; its norm is 6), converted to a
    standard deviation as for Gaussian noise.
    """
    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    resp = ndimage.convolve(frame, kernel, mode="reflect")
    inner = ndimage.binary_erosion(mask, iterations=2)
    vals = np.abs(resp[inner if inner.any() else mask])
    if vals.size == 0:
        return 0.0
    return float(np.median(vals) / 0.6745 / 6.0)


def _smoothing_gain(sigma: float) -> float:
    """Factor by which a 2-D Gaussian of ``sigma`` px reduces white-noise s.d."""
    return float(min(1.0, 1.0 / (2.0 * np.sqrt(np.pi) * sigma)))


def _suppress_close(peaks: np.ndarray, heights: np.ndarray, radius: float) -> np.ndarray:
    """Keep the brightest of any peaks closer than ``radius`` (greedy, brightest first)."""
    if len(peaks) < 2:
        return peaks
    order = np.argsort(-heights, kind="stable")
    peaks = peaks[order]
    pairs = cKDTree(peaks).query_pairs(radius, output_type="ndarray")
    keep = np.ones(len(peaks), dtype=bool)
    if len(pairs):
        pairs = np.sort(pairs, axis=1)  # (brighter, dimmer) since peaks are sorted
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        for a, b in pairs:  # only the few close pairs are visited
            if keep[a]:
                keep[b] = False
    return peaks[keep]


def _refine_log_parabola(smooth: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Sub-pixel peak positions from a 3-point parabola through log intensity per axis."""
    h, w = smooth.shape
    lo = float(smooth.min())
    span = float(smooth.max()) - lo
    logi = np.log(smooth - lo + 1e-3 * max(span, 1e-12))
    out = peaks.astype(np.float64)
    for axis, size in ((0, h), (1, w)):
        centre = peaks[:, axis]
        inner = (centre > 0) & (centre < size - 1)
        p = peaks[inner]
        step = np.zeros(2, dtype=np.int64)
        step[axis] = 1
        c0 = logi[p[:, 0], p[:, 1]]
        before = logi[p[:, 0] - step[0], p[:, 1] - step[1]]
        after = logi[p[:, 0] + step[0], p[:, 1] + step[1]]
        curv = before - 2.0 * c0 + after
        safe = np.where(curv < 0, curv, -1.0)
        offset = np.where(curv < 0, 0.5 * (before - after) / safe, 0.0)
        out[inner, axis] += np.clip(offset, -0.5, 0.5)
    return out


def lattice_regularity(centres: ArrayLike) -> float:
    """Fraction of points whose nearest-neighbour distance is within 30 % of the median.

    Cores of a fibre bundle form a near-regular lattice (measured on the real frames: 0.985
    to 1.000); local maxima of noise do not (uniform noise 0.34, Gaussian noise 0.59).

    Parameters
    ----------
    centres : array_like, shape (N, 2)

    Returns
    -------
    float
        In ``[0, 1]``; 0 for fewer than 3 points.
    """
    pts = np.asarray(centres, dtype=np.float64)
    if pts.ndim != 2 or len(pts) < 3:
        return 0.0
    dist, _ = cKDTree(pts).query(pts, k=2)
    nn = dist[:, 1]
    median = float(np.median(nn))
    if median <= 0:
        return 0.0
    return float(np.mean(np.abs(nn - median) <= 0.3 * median))


def detect_cores(
    raw: ArrayLike,
    *,
    background: ArrayLike | None = None,
    spacing: float | None = None,
    mask: ArrayLike | None = None,
) -> Detection:
    """Find the fibre cores on a raw camera frame of a bundle.

    Parameters
    ----------
    raw : array_like, shape (H, W)
        Raw frame: cores bright, cladding dark.
    background : array_like, shape (H, W), optional
        Background (flat-field) frame of the same bundle. When given, detection runs on it
        instead of ``raw``: it shows every core without the object's structure.
    spacing : float, optional
        Approximate core spacing in pixels; default :func:`estimate_spacing`.
    mask : array_like of bool, shape (H, W), optional
        Where to look for cores; default :func:`bundle_fov` of the detection frame.

    Returns
    -------
    Detection

    Raises
    ------
    NoBundleFound
        (a ``ValueError``) when the frame shows no regular lattice of cores: fewer than 3
        cores, or a :func:`lattice_regularity` below :data:`MIN_REGULARITY` (noise).
    ValueError
        A bad frame, background, spacing or mask.

    Warns
    -----
    UserWarning
        Without a background, when the field of view found covers less than
        :data:`SMALL_FOV_FRACTION` of the frame.

    Notes
    -----
    Algorithm, with ``s`` the spacing:

    1. the bundle's face (:func:`bundle_fov`) from the energy of the core pattern, widened by
       half a spacing so that the outermost row of cores lies inside;
    2. smooth the frame with a Gaussian of ``max(0.5, 0.15 s)`` px and take its 3x3 local
       maxima in the face whose height above the local mean (a Gaussian of ``0.6 s``)
       exceeds 2 noise standard deviations (pixel noise from the median absolute response
       to a 3x3 second-difference kernel, scaled by the noise reduction of the smoothing);
    3. of maxima closer than ``0.45 s`` keep only the brightest (greedy, brightest first);
    4. refine each to sub-pixel precision by a parabola through the logarithm of the
       smoothed intensity at the maximum and its two neighbours, along y and along x
       (exact for a Gaussian core; offsets clipped to +-0.5 px);
    5. refuse the result unless the cores form a regular lattice.
    """
    from skimage.feature import peak_local_max

    frame = _frame(raw, "raw")
    if background is not None:
        bg = _frame(background, "background")
        if bg.shape != frame.shape:
            raise ValueError(
                f"background shape {bg.shape} differs from the raw frame's {frame.shape}"
            )
        check_background(bg)
        frame = bg
    if spacing is not None:
        spacing = float(spacing)
        if not np.isfinite(spacing) or spacing < 1.5:
            raise ValueError(f"spacing must be a number of pixels >= 1.5, got {spacing!r}")
    if mask is None:
        if spacing is None:
            rough = _brightness_disc(frame, _default_fov_sigma(frame.shape))
            spacing = _spacing(frame, rough if rough is not None else np.ones(frame.shape, bool))
        fov = bundle_fov(frame, spacing=spacing)
        search = ndimage.binary_dilation(fov, iterations=max(1, int(round(0.5 * spacing))))
    else:
        fov = np.asarray(mask, dtype=bool)
        if fov.shape != frame.shape:
            raise ValueError(f"mask must have the frame's shape {frame.shape}, got {fov.shape}")
        if not fov.any():
            raise ValueError("mask selects no pixel; expected the region holding the bundle")
        if spacing is None:
            spacing = _spacing(frame, fov)
        search = fov
    if spacing < 1.5:
        raise ValueError(f"estimated core spacing {spacing:.3g} px is too small (< 1.5 px)")
    if background is None and mask is None and fov.mean() < SMALL_FOV_FRACTION:
        warnings.warn(
            f"the bundle's field of view found covers only {100 * fov.mean():.0f} % of the "
            "frame; if the bundle is larger (dark scene content hides its cores), detect on "
            "a background (flat-field) frame instead",
            UserWarning,
            stacklevel=3,
        )
    sigma = max(0.5, 0.15 * spacing)
    smooth = ndimage.gaussian_filter(frame, sigma)
    contrast = smooth - ndimage.gaussian_filter(frame, 0.6 * spacing)
    # true 3x3 local maxima (a wider footprint would hide a dim core beside a bright one)
    peaks = peak_local_max(
        smooth, min_distance=1, labels=search.astype(np.int32), exclude_border=False
    )
    threshold = 2.0 * _noise_sd(frame, fov) * _smoothing_gain(sigma)
    peaks = peaks[contrast[peaks[:, 0], peaks[:, 1]] > threshold]
    peaks = _suppress_close(peaks, smooth[peaks[:, 0], peaks[:, 1]], 0.45 * spacing)
    if len(peaks) < 3:
        raise NoBundleFound(
            f"no fibre bundle found: only {len(peaks)} fibre core(s); is this a raw bundle "
            f"frame with bright cores about {spacing:.3g} px apart?"
        )
    centres = _refine_log_parabola(smooth, peaks)
    centres = np.unique(np.round(centres, 6), axis=0)
    regularity = lattice_regularity(centres)
    if regularity < MIN_REGULARITY:
        raise NoBundleFound(
            f"no fibre bundle found: the {len(centres)} bright spots do not form a regular "
            f"lattice of cores (only {100 * regularity:.0f} % have a neighbour at the usual "
            f"distance; a bundle frame gives over {100 * MIN_REGULARITY:.0f} %); is this a "
            "raw bundle frame (not noise, not a reconstructed image)?"
        )
    return Detection(centres, float(spacing), fov, regularity)


def check_background(background: np.ndarray, name: str = "background") -> None:
    """Refuse a background (flat-field) frame that cannot divide anything.

    Raises
    ------
    ValueError
        NaN or infinite values, or no positive pixel (all zero): it would divide every core
        by zero and give an all-zero result.
    """
    arr = np.asarray(background)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values; expected a raw frame")
    if arr.size == 0 or float(np.max(arr)) <= 0:
        raise ValueError(
            f"{name} is all zero (no positive pixel); expected a frame of a uniform target "
            "through the bundle, showing every core"
        )
