"""Image-quality metrics of Ravì et al. (Section 4.1) and a small evaluation table.

- :func:`gcf`: the Global Contrast Factor of Matkovic et al. (2005), a reference-free contrast
  measure computed at 9 resolutions.
- :func:`delta_gcf`: ``gcf(image) - gcf(reference)`` (the paper's dGCF against the estimated HR
  image or against the low-resolution input).
- :func:`ssim`, :func:`psnr`: full-reference similarity, optionally restricted to a mask such as
  the circular field of view (FOV) of a fibre bundle.
- :func:`tot_cs`: the paper's composite score, the mean of the normalised SSIM and the
  normalised dGCF, with two documented normalisations.
- :func:`spectrum_distance`: radially averaged power spectrum of an image against the
  reference's, in the band above the fibre sampling frequency (the detail the fibres do not
  measure): how real the added detail's spectrum is.
- :func:`hallucination`: detail added where the reference is flat.
- :func:`gradient_ratio`: horizontal over vertical gradient energy of the detail a method
  added (directional streaks).
- :func:`evaluate`, :func:`format_table`, :func:`rows_to_csv`: one row of metrics per method,
  printed as Markdown or CSV.
- :func:`sharpness`: a no-reference sharpness (mean gradient magnitude); :func:`image_fov`:
  the field of view of a reconstructed image found from its flat surround.

See ``docs/metrics.md`` for the formulas and every implementation choice.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_image, as_mask

__all__ = [
    "COLUMNS",
    "GCF_GAMMA",
    "GCF_LEVELS",
    "band_correlation",
    "cycle_error",
    "delta_gcf",
    "evaluate",
    "format_table",
    "gcf",
    "gcf_contrasts",
    "gcf_weights",
    "gradient_ratio",
    "hallucination",
    "image_fov",
    "iter_evaluate_frames",
    "mean_over_frames",
    "psnr",
    "radial_power_spectrum",
    "rows_to_csv",
    "sharpness",
    "spectrum_distance",
    "ssim",
    "tot_cs",
]

#: Gamma of the display model used by the Global Contrast Factor (linear l = k ** gamma).
GCF_GAMMA = 2.2
#: Number of resolutions the Global Contrast Factor averages over.
GCF_LEVELS = 9

#: SSIM settings of Wang et al. (2004): 11x11 Gaussian window with sigma 1.5, population
#: covariance. ``_SSIM_PAD`` is the half window that scikit-image crops from the SSIM map.
_SSIM_KW: dict[str, Any] = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
_SSIM_PAD = 5

DataRange = float | tuple[float, float] | None


# --------------------------------------------------------------------------------------------
# input checks (the rules themselves live in _validate)
# --------------------------------------------------------------------------------------------
def _as_2d(image: ArrayLike, name: str) -> np.ndarray:
    """One frame under the package's image rule (NaN checked later, inside the mask)."""
    return as_image(
        image, name=name, ndim=2, finite=False, hint="; compute metrics frame by frame for stacks"
    )


def _check_finite(arr: np.ndarray, mask: np.ndarray | None, name: str) -> None:
    if not np.issubdtype(arr.dtype, np.floating):
        return
    inside = arr if mask is None else arr[mask]
    if not np.all(np.isfinite(inside)):
        where = "" if mask is None else " inside the mask"
        raise ValueError(f"{name} contains NaN or infinite values{where}; expected finite values")


def _check_pair(
    image: ArrayLike, reference: ArrayLike, mask: ArrayLike | None, *, as_float: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    im = _as_2d(image, "image")
    ref = _as_2d(reference, "reference")
    if im.shape != ref.shape:
        raise ValueError(
            f"image and reference must have the same shape, got {im.shape} and {ref.shape}"
        )
    m = as_mask(mask, im.shape)
    _check_finite(im, m, "image")
    _check_finite(ref, m, "reference")
    if not as_float:  # keep the dtype: GCF maps integer images by their dtype's range
        return im, ref, m
    return im.astype(np.float64), ref.astype(np.float64), m


def _range_pair(data_range: DataRange, name: str = "data_range") -> tuple[float, float] | None:
    """Normalise ``data_range`` (None, span, or (low, high)) to (low, high) or None."""
    if data_range is None:
        return None
    if np.ndim(data_range) == 0:
        high = float(data_range)  # type: ignore[arg-type]
        low = 0.0
    else:
        pair = np.asarray(data_range, dtype=np.float64).ravel()
        if pair.size != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {data_range!r}")
        low, high = float(pair[0]), float(pair[1])
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ValueError(f"{name} must be finite with high > low, got {data_range!r}")
    return low, high


def _span(data_range: DataRange, reference: np.ndarray, mask: np.ndarray | None) -> float:
    """Dynamic range used by SSIM and PSNR: given, or the reference's max - min (over mask)."""
    pair = _range_pair(data_range)
    if pair is not None:
        return pair[1] - pair[0]
    values = reference if mask is None else reference[mask]
    span = float(values.max() - values.min())
    if span <= 0:
        raise ValueError(
            "the reference is constant (max == min), so its range cannot be the data range; "
            "pass data_range explicitly"
        )
    return span


# --------------------------------------------------------------------------------------------
# Global Contrast Factor
# --------------------------------------------------------------------------------------------
def gcf_weights(levels: int = GCF_LEVELS) -> np.ndarray:
    """Weights of the Global Contrast Factor's resolutions (Matkovic et al. 2005).

    ``w_i = (-0.406385 * i/9 + 0.334573) * i/9 + 0.0877526`` for ``i = 1 .. levels``.

    Parameters
    ----------
    levels : int
        Number of resolutions (9 in the original definition).

    Returns
    -------
    numpy.ndarray
        ``(levels,)`` float64 weights, finest resolution first.

    Examples
    --------
    >>> round(float(gcf_weights()[0]), 6)
    0.11991
    """
    x = np.arange(1, levels + 1, dtype=np.float64) / 9.0
    return (-0.406385 * x + 0.334573) * x + 0.0877526


def _unit_intensity(image: np.ndarray, data_range: DataRange) -> np.ndarray:
    """Map pixel values to display intensities k in [0, 1] (float64, clipped)."""
    pair = _range_pair(data_range)
    if pair is None:
        if np.issubdtype(image.dtype, np.bool_):
            pair = (0.0, 1.0)
        elif image.dtype in (np.uint8, np.uint16):
            pair = (0.0, float(np.iinfo(image.dtype).max))
        else:
            pair = (0.0, 1.0)
    low, high = pair
    k = (image.astype(np.float64) - low) / (high - low)
    return np.clip(k, 0.0, 1.0)


def _mean_local_contrast(lum: np.ndarray, valid: np.ndarray | None) -> float:
    """Average 4-neighbour local contrast of the perceptual luminance ``lum``.

    Each pixel's local contrast is the mean of ``|L - L_neighbour|`` over its neighbours that
    exist (inside the image) and are valid; pixels that are not valid, or have no valid
    neighbour, are not counted. Returns 0 when no pixel has a neighbour.
    """
    total = np.zeros_like(lum)
    count = np.zeros(lum.shape, dtype=np.int64)
    for axis in (0, 1):
        hi = [slice(None), slice(None)]
        lo = [slice(None), slice(None)]
        hi[axis] = slice(1, None)
        lo[axis] = slice(None, -1)
        hi_t, lo_t = tuple(hi), tuple(lo)
        diff = np.abs(lum[hi_t] - lum[lo_t])
        if valid is not None:
            pair_ok = valid[hi_t] & valid[lo_t]
            diff = np.where(pair_ok, diff, 0.0)
            n = pair_ok.astype(np.int64)
        else:
            n = np.ones(diff.shape, dtype=np.int64)
        total[hi_t] += diff
        total[lo_t] += diff
        count[hi_t] += n
        count[lo_t] += n
    counted = count > 0
    if not counted.any():
        return 0.0
    return float(np.mean(total[counted] / count[counted]))


def _superpixels(
    linear: np.ndarray, valid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Average 2x2 blocks of linear luminance (next GCF resolution).

    An odd last row/column forms blocks of 2x1, 1x2 or 1x1 pixels, averaged over the pixels that
    exist. A superpixel is valid when every one of its pixels is valid.
    """
    h, w = linear.shape
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    pad = ((0, 2 * h2 - h), (0, 2 * w2 - w))
    sums = np.pad(linear, pad).reshape(h2, 2, w2, 2).sum(axis=(1, 3))
    exists = np.pad(np.ones((h, w), dtype=np.int64), pad).reshape(h2, 2, w2, 2).sum(axis=(1, 3))
    coarse = sums / exists
    if valid is None:
        return coarse, None
    coarse_valid = np.pad(valid, pad, constant_values=True).reshape(h2, 2, w2, 2).all(axis=(1, 3))
    return coarse, coarse_valid


def _gcf_contrasts(image: np.ndarray, mask: np.ndarray | None, data_range: DataRange) -> np.ndarray:
    """Average local contrast C_i at the GCF's 9 resolutions, finest first."""
    k = _unit_intensity(image, data_range)
    if mask is not None:
        k = np.where(mask, k, 0.0)  # values outside the mask never count; drop NaNs there
    linear = k**GCF_GAMMA
    valid = mask
    contrasts = np.empty(GCF_LEVELS, dtype=np.float64)
    for level in range(GCF_LEVELS):
        if level:
            linear, valid = _superpixels(linear, valid)
        contrasts[level] = _mean_local_contrast(100.0 * np.sqrt(linear), valid)
    return contrasts


def gcf_contrasts(
    image: ArrayLike, *, mask: ArrayLike | None = None, data_range: DataRange = None
) -> np.ndarray:
    """Average local contrasts ``C_1 .. C_9`` of the Global Contrast Factor, finest first.

    ``gcf(image) == gcf_weights() @ gcf_contrasts(image)``; the parameters are those of
    :func:`gcf`. Useful to see at which scales two images differ in contrast.

    Parameters
    ----------
    image : array_like
        2-D ``(H, W)`` greyscale image.
    mask : array_like of bool, optional
        Region to measure (see :func:`gcf`).
    data_range : float or (float, float), optional
        Intensity mapping (see :func:`gcf`).

    Returns
    -------
    numpy.ndarray
        ``(9,)`` float64, in perceptual-luminance units (0 to 100).

    Examples
    --------
    >>> import numpy as np
    >>> gcf_contrasts(np.indices((8, 8)).sum(axis=0) % 2)[:3]  # 1-px checkerboard
    array([100.,   0.,   0.])
    """
    arr = _as_2d(image, "image")
    m = as_mask(mask, arr.shape)
    _check_finite(arr, m, "image")
    return _gcf_contrasts(arr, m, data_range)


def gcf(image: ArrayLike, *, mask: ArrayLike | None = None, data_range: DataRange = None) -> float:
    """Global Contrast Factor of a greyscale image (Matkovic et al. 2005).

    The image is mapped to display intensities ``k`` in [0, 1], made linear with
    ``l = k ** 2.2`` and perceptual with ``L = 100 * sqrt(l)``. The local contrast of a pixel
    is the mean of ``|L - L_n|`` over its 4-neighbours (fewer at the border); ``C_i`` is its
    average over the image. This is repeated at 9 resolutions, each made of superpixels that
    average 2x2 blocks of the previous one in *linear* luminance, and
    ``GCF = sum_i w_i C_i`` with the weights of :func:`gcf_weights`.

    Parameters
    ----------
    image : array_like
        2-D ``(H, W)`` greyscale image.
    mask : array_like of bool, optional
        ``(H, W)`` region to measure (e.g. a circular field of view). The mask boundary is
        treated like the image border: a pixel's local contrast averages only neighbours that
        are inside the mask, and pixels outside the mask (whose values are ignored, even NaN)
        are not counted. At coarser resolutions a superpixel is inside the mask when all of
        its pixels are.
    data_range : float or (float, float), optional
        Values mapped to intensity 0 and 1: ``(low, high)``, or a number ``high`` meaning
        ``(0, high)``. Intensities outside the range are clipped to [0, 1], as a display
        would saturate them. Default: ``(0, 255)`` for uint8 and ``(0, 65535)`` for uint16
        images; ``(0, 1)`` for every other dtype (float, bool, other integers).

    Returns
    -------
    float
        The GCF (0 for a flat image; natural 8-bit photographs give roughly 1 to 10).

    Notes
    -----
    An odd row or column count is handled by letting the last superpixels cover the 1 or 2
    pixels that remain (their mean), so no pixel is dropped. Once a resolution is a single
    pixel its contrast, and that of all coarser ones, is 0. A resolution where no pixel has a
    neighbour inside the mask contributes 0.

    References
    ----------
    K. Matkovic, L. Neumann, A. Neumann, T. Psik and W. Purgathofer, "Global Contrast Factor -
    a New Approach to Image Contrast", Computational Aesthetics 2005, pp. 159-168.

    Examples
    --------
    >>> import numpy as np
    >>> round(gcf(np.indices((16, 16)).sum(axis=0) % 2), 4)  # 1-px checkerboard: w_1 * 100
    11.991
    >>> gcf(np.full((8, 8), 0.3))
    0.0
    """
    arr = _as_2d(image, "image")
    m = as_mask(mask, arr.shape)
    _check_finite(arr, m, "image")
    return float(np.dot(gcf_weights(), _gcf_contrasts(arr, m, data_range)))


def delta_gcf(
    image: ArrayLike,
    reference: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    data_range: DataRange = None,
) -> float:
    """Contrast gain ``gcf(image) - gcf(reference)`` (the paper's dGCF).

    Parameters
    ----------
    image, reference : array_like
        2-D images of the same shape (e.g. a super-resolved image and the estimated HR image,
        or the low-resolution input).
    mask : array_like of bool, optional
        Region measured in both images (see :func:`gcf`).
    data_range : float or (float, float), optional
        Intensity mapping used for *both* images (see :func:`gcf`); use the same one so the
        difference is meaningful.

    Returns
    -------
    float
        Positive when ``image`` has more contrast than ``reference``.
    """
    im, ref, m = _check_pair(image, reference, mask, as_float=False)
    w = gcf_weights()
    return float(
        np.dot(w, _gcf_contrasts(im, m, data_range)) - np.dot(w, _gcf_contrasts(ref, m, data_range))
    )


# --------------------------------------------------------------------------------------------
# full-reference metrics
# --------------------------------------------------------------------------------------------
def ssim(
    image: ArrayLike,
    reference: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    data_range: DataRange = None,
) -> float:
    """Structural similarity of ``image`` to ``reference``, optionally over a mask.

    Uses :func:`skimage.metrics.structural_similarity` with the settings of Wang et al. (2004):
    an 11x11 Gaussian window of sigma 1.5 and population covariances. Without a mask the result
    is scikit-image's mean SSIM (the SSIM map averaged away from a 5-pixel image border).

    Parameters
    ----------
    image, reference : array_like
        2-D images of the same shape, at least 11x11.
    mask : array_like of bool, optional
        Region to score. Pixels outside it are first set, in both images, to the reference's
        mean inside the mask, so they cannot change the score; the SSIM map is then averaged
        over mask pixels at least 5 pixels from the image border.
    data_range : float or (float, float), optional
        Dynamic range of the values (a span, or ``(low, high)`` whose difference is used).
        Default: the reference's ``max - min`` (inside the mask).

    Returns
    -------
    float
        SSIM in [-1, 1]; 1 for identical images.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((32, 32))
    >>> ssim(x, x)
    1.0
    """
    from skimage.metrics import structural_similarity

    im, ref, m = _check_pair(image, reference, mask)
    span = _span(data_range, ref, m)
    if min(im.shape) < 2 * _SSIM_PAD + 1:
        raise ValueError(
            f"SSIM needs images of at least {2 * _SSIM_PAD + 1}x{2 * _SSIM_PAD + 1} pixels "
            f"(its Gaussian window), got {im.shape}"
        )
    if m is not None:
        fill = float(ref[m].mean())
        im = np.where(m, im, fill)
        ref = np.where(m, ref, fill)
    _, smap = structural_similarity(im, ref, data_range=span, full=True, **_SSIM_KW)
    p = _SSIM_PAD
    inner = smap[p:-p, p:-p]
    if m is None:
        return float(inner.mean(dtype=np.float64))
    sel = m[p:-p, p:-p]
    if not sel.any():
        raise ValueError(
            f"the mask has no pixel at least {p} pixels from the image border, where SSIM "
            "is defined"
        )
    return float(inner[sel].mean(dtype=np.float64))


def psnr(
    image: ArrayLike,
    reference: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    data_range: DataRange = None,
) -> float:
    """Peak signal-to-noise ratio (dB) of ``image`` against ``reference``, optionally over a mask.

    ``PSNR = 10 log10(data_range**2 / MSE)`` with the mean squared error taken over the mask.

    Parameters
    ----------
    image, reference : array_like
        2-D images of the same shape.
    mask : array_like of bool, optional
        Pixels to compare; others (even NaN) are ignored.
    data_range : float or (float, float), optional
        Dynamic range (a span, or ``(low, high)``). Default: the reference's ``max - min``
        (inside the mask).

    Returns
    -------
    float
        PSNR in dB; ``inf`` when the images are equal on the mask.

    Examples
    --------
    >>> import numpy as np
    >>> psnr(np.zeros((4, 4)), np.eye(4), data_range=1.0)  # MSE = 1/4
    6.020599913279624
    """
    im, ref, m = _check_pair(image, reference, mask)
    span = _span(data_range, ref, m)
    diff = im - ref if m is None else im[m] - ref[m]
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return float(10.0 * np.log10(span * span / mse))


# --------------------------------------------------------------------------------------------
# composite score
# --------------------------------------------------------------------------------------------
def _minmax(values: np.ndarray) -> np.ndarray:
    """Min-max normalise along the last axis, ignoring NaNs; a constant row maps to 0.5."""
    finite = np.isfinite(values)
    safe_lo = np.where(finite, values, np.inf)
    safe_hi = np.where(finite, values, -np.inf)
    lo = safe_lo.min(axis=-1, keepdims=True)
    hi = safe_hi.max(axis=-1, keepdims=True)
    span = hi - lo
    ok = np.isfinite(span) & (span > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ok, (values - lo) / np.where(ok, span, 1.0), 0.5)
    return np.where(finite, out, np.nan)


def tot_cs(
    ssim_values: ArrayLike,
    dgcf_values: ArrayLike,
    *,
    method: str = "minmax",
    dgcf_scale: float = 0.5,
) -> np.ndarray:
    """Composite score Tot_cs: mean of the normalised SSIM and the normalised dGCF.

    Ravì et al. average "the normalized value of SSIM with the normalized value of dGCF_HR"
    without saying how they normalise. Two normalisations are offered:

    ``"minmax"`` (default, relative)
        Each quantity is min-max scaled to [0, 1] over the compared methods, i.e. along the
        last axis: ``(x - min) / (max - min)``. A 1-D input holds one value per method; a 2-D
        ``(n_images, n_methods)`` input is normalised per image (average the rows yourself).
        Scores depend on which methods are compared. When all methods tie, the normalised
        value is 0.5.
    ``"fixed"`` (absolute)
        Independent of the other methods: SSIM clipped to [0, 1] as is, and dGCF mapped by
        the logistic ``1 / (1 + exp(-dgcf / dgcf_scale))`` (0.5 for no contrast change).

    A method with a NaN (or infinite) SSIM or dGCF scores NaN and takes no part in the
    min-max of the others.

    Parameters
    ----------
    ssim_values, dgcf_values : array_like
        SSIM and dGCF (against the reference) per method; broadcastable shapes.
    method : {"minmax", "fixed"}
        The normalisation, see above.
    dgcf_scale : float
        Scale of the logistic for ``method="fixed"`` (dGCF of +0.5 maps to 0.73).

    Returns
    -------
    numpy.ndarray
        Tot_cs, float64, of the broadcast shape, in [0, 1].

    Examples
    --------
    >>> tot_cs([0.87, 0.84, 0.61], [0.66, -0.01, 1.34]).round(3)
    array([0.748, 0.442, 0.5  ])
    """
    s = np.asarray(ssim_values, dtype=np.float64)
    d = np.asarray(dgcf_values, dtype=np.float64)
    try:
        s, d = np.broadcast_arrays(s, d)
    except ValueError as exc:
        raise ValueError(
            f"ssim_values and dgcf_values must have broadcastable shapes, got {s.shape} and "
            f"{d.shape}"
        ) from exc
    if method == "minmax":
        joint = np.isfinite(s) & np.isfinite(d)
        s = np.where(joint, s, np.nan)
        d = np.where(joint, d, np.nan)
        if s.ndim == 0:
            s, d = s[None], d[None]
            return ((_minmax(s) + _minmax(d)) / 2.0)[0]
        return (_minmax(s) + _minmax(d)) / 2.0
    if method == "fixed":
        if not (math.isfinite(dgcf_scale) and dgcf_scale > 0):
            raise ValueError(f"dgcf_scale must be a positive number, got {dgcf_scale!r}")
        with np.errstate(over="ignore"):
            nd = 1.0 / (1.0 + np.exp(-d / dgcf_scale))
        return (np.clip(s, 0.0, 1.0) + nd) / 2.0
    raise ValueError(f"method must be 'minmax' or 'fixed', got {method!r}")


# --------------------------------------------------------------------------------------------
# spectra, hallucinated detail, directional streaks
# --------------------------------------------------------------------------------------------
def _positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _window(mask: np.ndarray | None, shape: tuple[int, ...], taper: float) -> np.ndarray:
    """Apodisation window: the mask (or the whole frame) with edges smoothed over ``taper`` px.

    The window is the mask eroded by ``taper`` pixels, blurred by a Gaussian of standard
    deviation ``taper / 2``, so it falls smoothly to ~0 at the mask's edge; without a mask a
    separable Hann window of the frame.
    """
    from scipy import ndimage

    if mask is None:
        hy = np.hanning(shape[0] + 2)[1:-1]
        hx = np.hanning(shape[1] + 2)[1:-1]
        return np.outer(hy, hx)
    radius = max(1, int(round(taper)))
    inner = ndimage.binary_erosion(mask, iterations=radius, border_value=0)
    if not inner.any():
        inner = mask
    win = ndimage.gaussian_filter(inner.astype(np.float64), max(taper / 2.0, 0.5))
    return win * mask


def _windowed_fft(
    images: Sequence[np.ndarray], mask: np.ndarray | None, taper: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Fourier transforms (``n x n``, ``n`` the longer side) of images over one region.

    Each image is cropped to the mask's bounding box, its window-weighted mean removed and
    multiplied by the apodisation window (:func:`_window`); returns the transforms and the
    window.
    """
    if mask is not None:
        ys, xs = np.nonzero(mask)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        images, mask = [im[box] for im in images], mask[box]
    shape = images[0].shape
    if min(shape) < 8:
        raise ValueError(f"the region is too small for a spectrum: {shape}, expected >= 8x8")
    win = _window(mask, shape, taper)
    n = max(shape)
    out = []
    for im in images:
        mean = float((im * win).sum() / win.sum())
        out.append(np.fft.fft2(np.where(win > 0, im - mean, 0.0) * win, s=(n, n)))
    return out, win


def radial_power_spectrum(
    image: ArrayLike, *, mask: ArrayLike | None = None, taper: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a 2-D image (or of its masked region).

    The image minus its (window-weighted) mean is multiplied by an apodisation window (the
    mask with edges tapered over ``taper`` pixels; a Hann window without a mask), Fourier
    transformed, and ``|F|^2`` averaged over rings one frequency bin wide, normalised by the
    window's energy so that white noise of variance ``v`` gives about ``v`` at every
    frequency.

    Parameters
    ----------
    image : array_like
        2-D image.
    mask : array_like of bool, optional
        Region to analyse (e.g. the field of view).
    taper : float, optional
        Width of the window's edge (px), default 4.

    Returns
    -------
    (frequencies, power) : tuple of ndarray
        Ring centres in cycles per pixel (from ``1 / n`` to 0.5, ``n`` the longer side of the
        region's bounding box) and the mean power in each ring.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f, p = radial_power_spectrum(rng.normal(0, 0.1, (128, 128)))
    >>> bool(abs(np.median(p) / 0.01 - 1) < 0.1)
    True
    """
    im = _as_2d(image, "image").astype(np.float64)
    m = as_mask(mask, im.shape)
    _check_finite(im, m, "image")
    taper = _positive_number(taper, "taper")
    (f_im,), win = _windowed_fft([im], m, taper)
    n = f_im.shape[0]
    spec = np.abs(f_im) ** 2
    spec /= float((win**2).sum())
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    ring = np.rint(np.hypot(fy, fx) * n).astype(np.int64)  # ring k: frequency k / n
    k_max = n // 2
    sel = (ring >= 1) & (ring <= k_max)
    power = np.bincount(ring[sel], weights=spec[sel], minlength=k_max + 1)[1:]
    count = np.bincount(ring[sel], minlength=k_max + 1)[1:]
    freqs = np.arange(1, k_max + 1) / n
    return freqs, power / np.maximum(count, 1)


def _band(freq: np.ndarray, spacing: float, max_frequency: float | None) -> np.ndarray:
    """Frequencies above the fibres' sampling, ``1 / (2 * spacing)``, up to ``max_frequency``."""
    band = freq >= 1.0 / (2.0 * spacing)
    if max_frequency is not None:
        band &= freq <= _positive_number(max_frequency, "max_frequency")
    return band


def spectrum_distance(
    image: ArrayLike,
    reference: ArrayLike,
    *,
    spacing: float,
    mask: ArrayLike | None = None,
    signed: bool = False,
    max_frequency: float | None = None,
) -> float:
    """Distance between the power spectra of an image and its reference, above the fibres'.

    The radially averaged power spectra (:func:`radial_power_spectrum`, same window for
    both images) are compared in the band of frequencies the fibre bundle does not sample,
    from ``1 / (2 * spacing)`` (the Nyquist frequency of samples ``spacing`` pixels apart)
    to 0.5 cycles per pixel: the detail a super-resolution method must invent. The distance
    is the mean, over the rings in that band, of ``|10 log10(P_image / P_reference)|`` in dB;
    0 when the image has the reference's spectrum there. A blurry output scores a large
    distance (too little power), and so does an over-sharpened or noisy one (too much).

    Parameters
    ----------
    image, reference : array_like
        2-D images of the same shape.
    spacing : float
        Fibre spacing in pixels (``bundle.spacing``), > 0.
    mask : array_like of bool, optional
        Region to analyse (e.g. the field of view).
    signed : bool, optional
        Return the mean of ``10 log10(P_image / P_reference)`` instead (dB): positive when the
        image has *more* power than the reference in the band (over-sharpened, noisy),
        negative when it has less (blurry).
    max_frequency : float, optional
        Upper end of the band in cycles per pixel (default 0.5, the whole band). E.g. the
        Nyquist frequency of the grid a model ran on: a model that resamples frames to a
        finer fibre spacing (``super_resolve``'s spacing match) works on a coarser grid and
        brings no detail above ``0.5 x`` its zoom back to the frame's grid.

    Returns
    -------
    float
        dB. NaN when the band holds no ring (``spacing`` below 1 pixel, or ``max_frequency``
        below ``1 / (2 * spacing)``).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> ref = rng.random((96, 96))
    >>> round(spectrum_distance(ref, ref, spacing=3.0), 6)
    0.0
    >>> round(spectrum_distance(0.5 * ref, ref, spacing=3.0, signed=True), 2)  # 1/4 the power
    -6.02
    """
    im, ref, m = _check_pair(image, reference, mask)
    spacing = _positive_number(spacing, "spacing")
    f, p_im = radial_power_spectrum(im, mask=m)
    _, p_ref = radial_power_spectrum(ref, mask=m)
    band = _band(f, spacing, max_frequency)
    tiny = 1e-20
    db = 10.0 * np.log10((p_im[band] + tiny) / (p_ref[band] + tiny))
    if db.size == 0:
        return math.nan
    return float(db.mean() if signed else np.abs(db).mean())


def band_correlation(
    image: ArrayLike,
    reference: ArrayLike,
    *,
    spacing: float,
    base: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    max_frequency: float | None = None,
    taper: float = 4.0,
) -> float:
    """Whether an image's fine detail is the reference's: their correlation in the fibres' band.

    :func:`spectrum_distance` says whether an image has as *much* fine detail as its
    reference; this says whether it is the *same* detail, in the same places. Both images
    (or, with ``base``, what each adds to it: ``image - base`` and ``reference - base``)
    are windowed as in :func:`radial_power_spectrum` and correlated over the frequencies from
    ``1 / (2 * spacing)`` (the fibres' sampling) to ``max_frequency``: by Parseval, the
    Pearson correlation of the two images band-passed to that band. 1 when the detail is the
    reference's (at any amplitude), about 0 when it is unrelated to it (invented detail,
    noise), negative when it is opposite. With ``base`` the TLI input, it tells whether the
    detail a method *adds* is detail the reference has.

    Parameters
    ----------
    image, reference : array_like
        2-D images of the same shape.
    spacing : float
        Fibre spacing in pixels (``bundle.spacing``), > 0.
    base : array_like, optional
        Image both are compared from (e.g. the TLI input), same shape.
    mask : array_like of bool, optional
        Region to analyse (e.g. the field of view).
    max_frequency : float, optional
        Upper end of the band in cycles per pixel (default 0.5, the whole band).
    taper : float, optional
        Width of the window's edge (px), default 4.

    Returns
    -------
    float
        In [-1, 1]. NaN when the band holds no frequency, or when the image (or the
        reference) has nothing in it (e.g. ``image`` equal to ``base``).

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> ref = rng.random((96, 96))
    >>> round(band_correlation(0.3 * ref, ref, spacing=3.0), 6)
    1.0
    >>> abs(band_correlation(rng.random((96, 96)), ref, spacing=3.0)) < 0.1
    True
    """
    im, ref, m = _check_pair(image, reference, mask)
    spacing = _positive_number(spacing, "spacing")
    taper = _positive_number(taper, "taper")
    if base is not None:
        b = _as_2d(base, "base").astype(np.float64)
        if b.shape != im.shape:
            raise ValueError(f"base has shape {b.shape}, expected {im.shape}")
        _check_finite(b, m, "base")
        im, ref = im - b, ref - b
    (f_im, f_ref), _ = _windowed_fft([im, ref], m, taper)
    n = f_im.shape[0]
    freq = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])
    band = _band(freq, spacing, max_frequency) & (freq <= 0.5)
    a, r = f_im[band], f_ref[band]
    power = float(np.sum(np.abs(a) ** 2)) * float(np.sum(np.abs(r) ** 2))
    if not band.any() or power <= 0.0:
        return math.nan
    return float(np.clip(np.sum((a * np.conj(r)).real) / math.sqrt(power), -1.0, 1.0))


def _detail(image: np.ndarray, sigma: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Fine detail: the image minus its Gaussian blur of standard deviation ``sigma``.

    With a mask the blur is a normalised convolution over the mask's pixels only, so that
    pixels outside (e.g. the zeros around a field of view) do not count as detail.
    """
    from scipy import ndimage

    if mask is None:
        return image - ndimage.gaussian_filter(image, sigma, mode="reflect")
    weight = ndimage.gaussian_filter(mask.astype(np.float64), sigma, mode="constant")
    blur = ndimage.gaussian_filter(np.where(mask, image, 0.0), sigma, mode="constant")
    return np.where(mask, image - blur / np.maximum(weight, 1e-12), 0.0)


def hallucination(
    image: ArrayLike,
    reference: ArrayLike,
    *,
    spacing: float,
    mask: ArrayLike | None = None,
    flat_fraction: float = 0.25,
) -> float:
    """Detail added where the reference is flat: RMS of invented fine structure.

    Fine detail is an image minus its Gaussian blur of standard deviation ``spacing / 2``
    (structure below the fibre spacing, which the fibres do not resolve; with a mask, the
    blur averages only pixels inside it). The *flat* pixels
    are the ``flat_fraction`` of the mask's pixels where the reference's own fine detail is
    weakest (its local RMS, Gaussian-weighted over about one fibre spacing). The measure is
    the fine-detail energy the image has there in excess of the reference's,
    ``sqrt(max(0, mean(d_image^2) - mean(d_reference^2)))`` over the flat pixels: 0 for the
    reference itself and for an image that is only smoother (missing detail is not
    counted), and, in intensity units, how much texture, noise or ringing a method draws
    where the truth has little or none.

    Parameters
    ----------
    image, reference : array_like
        2-D images of the same shape.
    spacing : float
        Fibre spacing in pixels (``bundle.spacing``), > 0.
    mask : array_like of bool, optional
        Region to score (e.g. the field of view).
    flat_fraction : float, optional
        Share of the (masked) pixels counted as flat, in (0, 1]; default 0.25.

    Returns
    -------
    float
        RMS in the images' intensity units.

    Examples
    --------
    >>> ref = np.zeros((64, 64))
    >>> ref[:, 32:] = 1.0  # flat halves with one edge
    >>> noisy = ref + 0.05 * np.random.default_rng(0).standard_normal(ref.shape)
    >>> hallucination(ref, ref, spacing=3.0)
    0.0
    >>> bool(0.03 < hallucination(noisy, ref, spacing=3.0) < 0.06)
    True
    """
    from scipy import ndimage

    im, ref, m = _check_pair(image, reference, mask)
    spacing = _positive_number(spacing, "spacing")
    frac = _positive_number(flat_fraction, "flat_fraction")
    if frac > 1:
        raise ValueError(f"flat_fraction must be in (0, 1], got {flat_fraction!r}")
    sigma = spacing / 2.0
    d_ref = _detail(ref, sigma, m)
    local = np.sqrt(ndimage.gaussian_filter(d_ref**2, spacing, mode="reflect"))
    inside = np.ones(im.shape, dtype=bool) if m is None else m
    threshold = np.quantile(local[inside], frac)
    flat = inside & (local <= threshold)
    excess = np.mean(_detail(im, sigma, m)[flat] ** 2) - np.mean(d_ref[flat] ** 2)
    return float(np.sqrt(max(float(excess), 0.0)))


def gradient_ratio(image: ArrayLike, base: ArrayLike, *, mask: ArrayLike | None = None) -> float:
    """Horizontal over vertical gradient energy of the detail a method added to its input.

    ``added = image - base`` (e.g. the output minus its TLI input); the ratio is
    ``sum (d added / dx)^2 / sum (d added / dy)^2`` over pixel pairs inside the mask. About 1
    for detail without a preferred direction; above 1 when the added detail varies mostly
    along x, i.e. draws *vertical* streaks; below 1 for horizontal streaks.

    Parameters
    ----------
    image, base : array_like
        2-D images of the same shape.
    mask : array_like of bool, optional
        Region to score; a difference counts when both its pixels are inside.

    Returns
    -------
    float
        The ratio (NaN when nothing was added).

    Examples
    --------
    >>> base = np.zeros((32, 32))
    >>> stripes = base + (np.arange(32) % 2)[None, :]  # columns alternate: vertical stripes
    >>> gradient_ratio(stripes, base) > 100
    True
    """
    im, b, m = _check_pair(image, base, mask)
    added = im - b
    gx = np.diff(added, axis=1)
    gy = np.diff(added, axis=0)
    if m is not None:
        gx = gx[m[:, 1:] & m[:, :-1]]
        gy = gy[m[1:, :] & m[:-1, :]]
    ex, ey = float(np.sum(gx**2)), float(np.sum(gy**2))
    if ey == 0.0:
        return math.nan if ex == 0.0 else math.inf
    return ex / ey


# --------------------------------------------------------------------------------------------
# evaluation table
# --------------------------------------------------------------------------------------------
def cycle_error(image: ArrayLike, bundle: Any, values: ArrayLike) -> float:
    """Cycle-consistency error: mean of ``(V - V^)**2`` over the fibres.

    ``V^ = bundle.vectorize(image)`` are the Voronoi cell means of the image, ``V`` the
    measured fibre values. Fibres where either is NaN (e.g. a cell with no pixel) are skipped.

    Parameters
    ----------
    image : array_like
        2-D image on the bundle's pixel grid.
    bundle : object
        Anything with ``vectorize(image) -> (N,)``, e.g. a :class:`~napari_cycsr.FibreBundle`.
    values : array_like
        ``(N,)`` measured fibre values, in the image's units.

    Returns
    -------
    float
        The mean squared difference (NaN when no fibre can be compared).
    """
    if not callable(getattr(bundle, "vectorize", None)):
        raise TypeError(f"bundle must have a vectorize(image) method, got {type(bundle).__name__}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be a 1-D (N,) vector of fibre values, got shape {v.shape}")
    v_hat = np.asarray(bundle.vectorize(_as_2d(image, "image")), dtype=np.float64)
    if v_hat.shape != v.shape:
        raise ValueError(
            f"bundle.vectorize(image) returned shape {v_hat.shape}, but values has shape "
            f"{v.shape}; expected one value per fibre"
        )
    ok = np.isfinite(v) & np.isfinite(v_hat)
    if not ok.any():
        return math.nan
    return float(np.mean((v[ok] - v_hat[ok]) ** 2))


#: Column order of :func:`evaluate`'s rows.
COLUMNS = ("method", "ssim", "psnr", "gcf", "dgcf_ref", "dgcf_lr", "cycle_error", "tot_cs")


def evaluate(
    images: Mapping[str, ArrayLike],
    *,
    reference: ArrayLike | None = None,
    lr: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    bundle: Any = None,
    values: ArrayLike | None = None,
    data_range: DataRange = None,
    tot_cs_method: str = "minmax",
    with_sharpness: bool = False,
) -> list[dict[str, Any]]:
    """Score several methods' outputs of the same frame; one row per method.

    Parameters
    ----------
    images : mapping of str to array_like
        Method name -> 2-D output image; all of the same shape.
    reference : array_like, optional
        The (estimated) high-resolution image: enables ``ssim``, ``psnr``, ``dgcf_ref`` and
        ``tot_cs``.
    lr : array_like, optional
        The low-resolution input: enables ``dgcf_lr``.
    mask : array_like of bool, optional
        Field of view; every metric is restricted to it.
    bundle : object, optional
        Anything with ``vectorize(image) -> (N,)`` (a ``FibreBundle``); with ``values``
        enables ``cycle_error``.
    values : array_like, optional
        ``(N,)`` measured fibre values.
    data_range : float or (float, float), optional
        One intensity range for every metric: GCF maps ``(low, high)`` to [0, 1], SSIM and
        PSNR use ``high - low``. Default: the reference's ``(min, max)`` inside the mask, else
        the low-resolution input's, else the GCF's dtype default (float images in [0, 1]).
    tot_cs_method : {"minmax", "fixed"}
        Normalisation of :func:`tot_cs`, across the rows of this call for ``"minmax"``.
    with_sharpness : bool
        Add a last column ``sharpness`` (:func:`sharpness`, no reference needed).

    Returns
    -------
    list of dict
        Keys ``method, ssim, psnr, gcf, dgcf_ref, dgcf_lr, cycle_error, tot_cs`` (and
        ``sharpness``) in every row; a value that cannot be computed with the given inputs is
        NaN.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> hr = rng.random((32, 32))
    >>> rows = evaluate({"same": hr, "flat": np.full_like(hr, 0.5)}, reference=hr)
    >>> [round(r["ssim"], 3) for r in rows]
    [1.0, 0.012]
    """
    if not isinstance(images, Mapping) or len(images) == 0:
        raise TypeError("images must be a non-empty mapping of method name -> 2-D image")
    arrays: dict[str, np.ndarray] = {}
    shape: tuple[int, ...] | None = None
    for name, img in images.items():
        arr = _as_2d(img, f"images[{name!r}]")
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise ValueError(
                f"all images must have the same shape; images[{name!r}] has {arr.shape}, "
                f"expected {shape}"
            )
        arrays[str(name)] = arr
    assert shape is not None
    m = as_mask(mask, shape)
    for name, arr in arrays.items():
        _check_finite(arr, m, f"images[{name!r}]")
    ref = lr_arr = None
    if reference is not None:
        ref = _as_2d(reference, "reference")
        if ref.shape != shape:
            raise ValueError(f"reference has shape {ref.shape}, expected the images' {shape}")
        _check_finite(ref, m, "reference")
    if lr is not None:
        lr_arr = _as_2d(lr, "lr")
        if lr_arr.shape != shape:
            raise ValueError(f"lr has shape {lr_arr.shape}, expected the images' {shape}")
        _check_finite(lr_arr, m, "lr")
    if (bundle is None) != (values is None):
        raise ValueError("bundle and values must be given together (for cycle_error)")

    rng_pair = _range_pair(data_range)
    if rng_pair is None:
        for src in (ref, lr_arr):
            if src is not None:
                v = (src if m is None else src[m]).astype(np.float64)
                lo, hi = float(v.min()), float(v.max())
                if hi > lo:
                    rng_pair = (lo, hi)
                    break

    def _gcf(arr: np.ndarray) -> float:
        return float(np.dot(gcf_weights(), _gcf_contrasts(arr, m, rng_pair)))

    gcf_ref = _gcf(ref) if ref is not None else math.nan
    gcf_lr = _gcf(lr_arr) if lr_arr is not None else math.nan
    rows: list[dict[str, Any]] = []
    for name, arr in arrays.items():
        g = _gcf(arr)
        row: dict[str, Any] = dict.fromkeys(COLUMNS, math.nan)
        row["method"] = name
        row["gcf"] = g
        if ref is not None:
            row["ssim"] = ssim(arr, ref, mask=m, data_range=rng_pair)
            row["psnr"] = psnr(arr, ref, mask=m, data_range=rng_pair)
            row["dgcf_ref"] = g - gcf_ref
        if lr_arr is not None:
            row["dgcf_lr"] = g - gcf_lr
        if bundle is not None:
            row["cycle_error"] = cycle_error(arr, bundle, values)  # type: ignore[arg-type]
        if with_sharpness:
            row["sharpness"] = sharpness(arr, mask=m, data_range=rng_pair)
        rows.append(row)
    if ref is not None:
        scores = tot_cs(
            [r["ssim"] for r in rows], [r["dgcf_ref"] for r in rows], method=tot_cs_method
        )
        for row, score in zip(rows, scores):
            row["tot_cs"] = float(score)
    elif tot_cs_method not in ("minmax", "fixed"):
        raise ValueError(f"tot_cs_method must be 'minmax' or 'fixed', got {tot_cs_method!r}")
    return rows


def _fmt(value: Any, digits: int) -> str:
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v != 0 and abs(v) < 10.0 ** (1 - digits):  # small values keep their digits
            return f"{v:.{max(digits - 1, 1)}e}"
        return f"{v:.{digits}f}"
    return str(value)


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    return cols


def format_table(
    rows: Sequence[Mapping[str, Any]], *, digits: int = 3, drop_empty: bool = True
) -> str:
    """Format :func:`evaluate` rows as a Markdown table.

    Parameters
    ----------
    rows : sequence of mapping
        Rows with the same keys (missing keys print as ``-``).
    digits : int
        Decimals of float values; non-zero values below ``10**(1 - digits)`` print in
        scientific notation with ``digits - 1`` decimals. NaN prints as ``-``.
    drop_empty : bool
        Leave out columns whose values are NaN (or missing) in every row.

    Returns
    -------
    str
        The table, one line per row plus header and separator, ending with a newline.
    """
    if not rows:
        raise ValueError("rows is empty; expected at least one row to format")
    cols = _columns(rows)

    def _empty(col: str) -> bool:
        for row in rows:
            v = row.get(col, math.nan)
            if not (isinstance(v, float | np.floating) and math.isnan(float(v))):
                return False
        return True

    if drop_empty:
        cols = [c for c in cols if not _empty(c)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, math.nan), digits) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Format :func:`evaluate` rows as CSV text (header line first, full float precision).

    NaN is written as ``nan`` and infinity as ``inf``, which ``float()`` and numpy read back.

    Parameters
    ----------
    rows : sequence of mapping
        Rows to write; the columns are the union of their keys, in first-seen order.

    Returns
    -------
    str
        CSV text with ``\\n`` line endings.
    """
    if not rows:
        raise ValueError("rows is empty; expected at least one row to write")
    cols = _columns(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        out = []
        for c in cols:
            v = row.get(c, math.nan)
            out.append(repr(float(v)) if isinstance(v, float | np.floating) else str(v))
        writer.writerow(out)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# no-reference sharpness and the field of view of reconstructed images
# --------------------------------------------------------------------------------------------
def sharpness(
    image: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    data_range: DataRange = None,
    edge: int = 2,
) -> float:
    """No-reference sharpness: mean gradient magnitude, as a fraction of the intensity range.

    The Sobel gradient magnitude (per pixel step) averaged over the field of view, with
    ``edge`` pixels along the mask's border left out (the step at the edge of a fibre
    bundle's field of view is not detail), divided by the intensity range. Higher is
    sharper; noise raises it too, so compare images of the same scene and noise (an output
    against its input), next to the cycle error that tells whether the added detail is
    consistent with the measurement.

    Parameters
    ----------
    image : array_like
        2-D image.
    mask : array_like of bool, optional
        Field of view.
    data_range : float or (float, float), optional
        Intensity range (default: the image's min-max inside the mask).
    edge : int
        Pixels left out along the mask's border.

    Returns
    -------
    float
        NaN when the mask leaves no pixel or the image is constant.

    Examples
    --------
    >>> ramp = np.tile(np.linspace(0, 1, 11), (11, 1))
    >>> round(sharpness(ramp, data_range=1.0), 3)
    0.1
    """
    from scipy import ndimage

    arr = _as_2d(image, "image")
    m = as_mask(mask, arr.shape)
    _check_finite(arr, m, "image")
    if not isinstance(edge, int | np.integer) or edge < 0:
        raise ValueError(f"edge must be a non-negative integer, got {edge!r}")
    valid = np.ones(arr.shape, bool) if m is None else m.copy()
    pad = np.zeros(arr.shape, bool)
    pad[1:-1, 1:-1] = True  # the frame border has no full 3x3 neighbourhood
    if edge:
        valid = ndimage.binary_erosion(valid, iterations=int(edge), border_value=0)
    valid &= pad
    if not valid.any():
        return math.nan
    pair = _range_pair(data_range)
    if pair is None:
        values = arr if m is None else arr[m]
        pair = (float(values.min()), float(values.max()))
    span = pair[1] - pair[0]
    if not span > 0:
        return math.nan
    a = arr.astype(np.float64)
    gy = ndimage.sobel(a, axis=0) / 8.0
    gx = ndimage.sobel(a, axis=1) / 8.0
    return float(np.hypot(gy, gx)[valid].mean() / span)


def image_fov(image: ArrayLike, *, tolerance: float | None = None) -> np.ndarray | None:
    """The field of view of a reconstructed or super-resolved pCLE image, found from its pixels.

    A TLI image (and a super-resolved one masked to the fibres) is constant outside the
    bundle's field of view, usually 0. The surround is the region of that constant value
    connected to the frame's border; the field of view is the convex hull of the rest (a
    bundle's field of view is convex: dark detail touching its edge does not carve it).

    Parameters
    ----------
    image : array_like
        2-D image.
    tolerance : float, optional
        Largest difference from the border value still counted as surround (default:
        ``1e-6`` of the image's range).

    Returns
    -------
    ndarray of bool or None
        The field of view; None when the image has no flat surround (more than half of the
        frame's border pixels differ from their median) or the surround would be nearly
        everything or nothing.

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :40]
    >>> disc = ((yy - 20) ** 2 + (xx - 20) ** 2 < 15**2) * (0.5 + 0.01 * xx)
    >>> fov = image_fov(disc)
    >>> bool(fov[20, 20]), bool(fov[0, 0]), round(float(fov.mean()), 2)
    (True, False, 0.45)
    """
    from scipy import ndimage
    from skimage.morphology import convex_hull_image

    arr = _as_2d(image, "image").astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values")
    border = np.concatenate([arr[0], arr[-1], arr[1:-1, 0], arr[1:-1, -1]])
    value = float(np.median(border))
    span = float(arr.max() - arr.min())
    tol = 1e-6 * span if tolerance is None else float(tolerance)
    if np.mean(np.abs(border - value) <= tol) < 0.5:
        return None
    flat = np.abs(arr - value) <= tol
    labels, _ = ndimage.label(flat)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    surround = np.isin(labels, edge_labels[edge_labels > 0])
    inside = ~surround
    if inside.mean() < 0.01 or inside.mean() > 0.99:
        return None
    return convex_hull_image(inside)


# --------------------------------------------------------------------------------------------
# stacks: the same table frame by frame, and its mean
# --------------------------------------------------------------------------------------------
def _frame_of(array: Any, t: int, n: int, name: str) -> np.ndarray | None:
    if array is None:
        return None
    arr = np.asarray(array) if not hasattr(array, "compute") else array
    if arr.ndim == 2:
        return np.asarray(arr, dtype=np.float32)
    flat = arr.reshape(-1, *arr.shape[-2:])
    if flat.shape[0] != n:
        raise ValueError(f"{name} has {flat.shape[0]} frames, expected {n} (or one 2-D image)")
    return np.asarray(flat[t], dtype=np.float32)


def iter_evaluate_frames(
    images: Mapping[str, Any],
    *,
    reference: Any = None,
    lr: Any = None,
    mask: ArrayLike | None = None,
    bundle: Any = None,
    values: ArrayLike | None = None,
    sample_values: bool = False,
    **options: Any,
) -> Any:
    """:func:`evaluate` frame by frame over stacks: yields each frame's rows.

    Parameters
    ----------
    images : mapping of str to array_like
        Method name -> ``(H, W)`` image or ``(..., H, W)`` stack; all of one shape.
    reference, lr : array_like, optional
        One 2-D image for every frame, or a stack with the images' frames.
    mask : array_like of bool, optional
        ``(H, W)`` field of view (the same for every frame).
    bundle : FibreBundle, optional
        With ``values`` (``(N,)`` or ``(T, N)``), or with ``sample_values`` (the values are
        then ``lr`` sampled at the fibre centres, frame by frame), enables ``cycle_error``.
    sample_values : bool
        See ``bundle``.
    **options
        Passed to :func:`evaluate` (``data_range``, ``tot_cs_method``, ``with_sharpness``).

    Yields
    ------
    list of dict
        The rows of frame ``t`` (0-based), each with ``"frame": t`` after ``"method"``.

    Examples
    --------
    >>> stack = np.random.default_rng(0).random((3, 16, 16))
    >>> rows = [r for frame in iter_evaluate_frames({"a": stack, "b": stack / 2}) for r in frame]
    >>> len(rows), rows[0]["method"], rows[-1]["frame"]
    (6, 'a', 2)
    """
    if not isinstance(images, Mapping) or not images:
        raise TypeError("images must be a non-empty mapping of method name -> image or stack")
    shapes = {name: tuple(np.shape(img)) for name, img in images.items()}
    first = next(iter(shapes.values()))
    for name, shape in shapes.items():
        if shape != first:
            raise ValueError(
                f"all images must have the same shape; images[{name!r}] has {shape}, "
                f"expected {first}"
            )
    if len(first) < 2:
        raise ValueError(f"images must be 2-D images or stacks, got shape {first}")
    n = int(np.prod(first[:-2])) if len(first) > 2 else 1
    vals = None
    if values is not None:
        vals = np.asarray(values, dtype=np.float64).reshape(-1, np.shape(values)[-1])
        if vals.shape[0] not in (1, n):
            raise ValueError(f"values has {vals.shape[0]} rows of fibre values; expected 1 or {n}")
    if sample_values and bundle is None:
        raise ValueError("sample_values needs the bundle")
    for t in range(n):
        frames = {name: _frame_of(img, t, n, f"images[{name!r}]") for name, img in images.items()}
        lr_t = _frame_of(lr, t, n, "lr")
        kwargs: dict[str, Any] = {
            "reference": _frame_of(reference, t, n, "reference"), "lr": lr_t, "mask": mask,
        }  # fmt: skip
        if bundle is not None and vals is not None:
            kwargs.update(bundle=bundle, values=vals[t if vals.shape[0] > 1 else 0])
        elif bundle is not None and sample_values:
            source = lr_t if lr_t is not None else next(iter(frames.values()))
            kwargs.update(bundle=bundle, values=bundle.sample(source))
        rows = evaluate(frames, **kwargs, **options)
        yield [{"method": row["method"], "frame": t, **row} for row in rows]


def mean_over_frames(frame_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per method: the mean of every metric over the frames (NaN ignored).

    Parameters
    ----------
    frame_rows : sequence of mapping
        Rows with ``method`` and ``frame`` keys (:func:`iter_evaluate_frames`).

    Returns
    -------
    list of dict
        ``method``, ``frames`` (how many), then the metrics; a metric NaN in every frame
        stays NaN.
    """
    methods = list(dict.fromkeys(row["method"] for row in frame_rows))
    keys = [k for k in _columns(frame_rows) if k not in ("method", "frame")]
    out = []
    for method in methods:
        mine = [r for r in frame_rows if r["method"] == method]
        row: dict[str, Any] = {"method": method, "frames": len(mine)}
        for key in keys:
            values = np.array([r.get(key, math.nan) for r in mine], dtype=np.float64)
            row[key] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
        out.append(row)
    return out
