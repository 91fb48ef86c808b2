"""Comparison methods of Ravì et al. (Section 4.1): TLI, Wiener deconvolution and sharpening.

- :func:`tli`: the triangulated linear interpolation every pCLE system displays (a thin
  wrapper over ``bundle.reconstruct``).
- :func:`wiener`: Wiener deconvolution with a point-spread function (PSF) matched to the fibre
  spacing (:func:`fibre_psf`), its balance estimated from the image or sampled by
  scikit-image's unsupervised Wiener filter.
- :func:`sharpen`: the paper's "contrast-enhancement" baseline, an unsharp mask.
- :func:`backproject`: the TLI image projected onto the measured fibre values (iterative
  back-projection, :func:`napari_cycsr.consistency.project_consistent`): the paper's cycle
  consistency enforced with no training.

Every function takes a 2-D ``(H, W)`` image or a stack ``(..., H, W)`` (processed frame by
frame), never modifies its input, returns float32, and respects an optional field-of-view
mask: outside the mask the image is replaced, before filtering, by the value of the nearest
pixel inside it (so the FOV edge does not ring), and the result is 0 outside the mask.
See ``docs/metrics.md`` for the models and parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_image, as_mask, nearest_fill_index

__all__ = ["backproject", "estimate_noise", "fibre_psf", "sharpen", "tli", "wiener"]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


# --------------------------------------------------------------------------------------------
# input checks and helpers
# --------------------------------------------------------------------------------------------
def _as_images(image: ArrayLike, name: str = "image") -> np.ndarray:
    """``image`` under the package's image rule, as a float64 copy (never the input)."""
    return as_image(image, name=name, min_side=2).astype(np.float64)


def _positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a positive number, got {value!r}") from exc
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _per_frame(stack: np.ndarray, fn: Any) -> np.ndarray:
    """Apply ``fn`` to each (H, W) frame of a (..., H, W) float64 array; float32 result."""
    frames = stack.reshape((-1, *stack.shape[-2:]))
    out = np.empty(frames.shape, dtype=np.float32)
    for i, frame in enumerate(frames):
        out[i] = fn(frame)
    return out.reshape(stack.shape)


# --------------------------------------------------------------------------------------------
# TLI
# --------------------------------------------------------------------------------------------
def tli(values: ArrayLike, bundle: Any) -> np.ndarray:
    """Triangulated linear interpolation of fibre values (the standard pCLE display).

    Parameters
    ----------
    values : array_like
        ``(N,)`` fibre values, or ``(T, N)`` for a stack.
    bundle : object
        Anything with ``reconstruct(values)``, e.g. a :class:`~napari_cycsr.FibreBundle`.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` (or ``(T, H, W)``) float32 image.
    """
    if not callable(getattr(bundle, "reconstruct", None)):
        raise TypeError(
            f"bundle must have a reconstruct(values) method, got {type(bundle).__name__}"
        )
    return np.asarray(bundle.reconstruct(values), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# PSF and noise
# --------------------------------------------------------------------------------------------
def _disc(radius: float, step: float, half: int) -> np.ndarray:
    y, x = (np.mgrid[-half : half + 1, -half : half + 1] * step).astype(np.float64)
    return (np.hypot(y, x) <= radius).astype(np.float64)


def fibre_psf(spacing: float, *, kind: str = "gaussian") -> np.ndarray:
    """Point-spread function of a fibre-bundle image reconstructed by TLI.

    Parameters
    ----------
    spacing : float
        Fibre-centre spacing in pixels (``FibreBundle.spacing``).
    kind : {"gaussian", "tli"}
        ``"gaussian"``: an isotropic Gaussian whose full width at half maximum equals
        ``spacing`` (sigma = spacing / 2.355). ``"tli"``: the effective PSF of acquisition
        plus reconstruction on a hexagonal lattice, i.e. the average over a fibre's cell (a
        disc of the hexagonal cell's area, radius 0.525 * spacing) convolved with the linear
        interpolation kernel (a cone of the same volume as the lattice's hat function, radius
        0.909 * spacing), computed on a 5x finer grid and binned to pixels.

    Returns
    -------
    numpy.ndarray
        Square, odd-sized, float64 kernel that sums to 1, centred.

    Examples
    --------
    >>> psf = fibre_psf(3.0)
    >>> psf.shape, round(float(psf.sum()), 6)
    ((13, 13), 1.0)
    """
    s = _positive(spacing, "spacing")
    if kind == "gaussian":
        sigma = s / _FWHM_PER_SIGMA
        half = max(1, math.ceil(4.0 * sigma))
        y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
        psf = np.exp(-(y * y + x * x) / (2.0 * sigma * sigma))
    elif kind == "tli":
        from scipy.signal import fftconvolve

        cell_r = s * math.sqrt(math.sqrt(3.0) / (2.0 * math.pi))  # disc of the cell's area
        cone_r = s * math.sqrt(3.0 * math.sqrt(3.0) / (2.0 * math.pi))  # cone, same volume
        half = max(1, math.ceil(cell_r + cone_r))
        sub = 5  # odd: pixel centres fall on the fine grid
        fine_half = half * sub + sub // 2
        step = 1.0 / sub
        y, x = np.mgrid[-fine_half : fine_half + 1, -fine_half : fine_half + 1] * step
        cone = np.clip(1.0 - np.hypot(y, x) / cone_r, 0.0, None)
        disc = _disc(cell_r, step, fine_half)
        fine = fftconvolve(cone, disc, mode="same")
        fine[fine < 1e-9 * fine.max()] = 0.0  # FFT round-off outside the support
        n = 2 * half + 1
        psf = fine.reshape(n, sub, n, sub).sum(axis=(1, 3))
    else:
        raise ValueError(f"kind must be 'gaussian' or 'tli', got {kind!r}")
    return psf / psf.sum()


def estimate_noise(image: ArrayLike, *, mask: ArrayLike | None = None) -> float:
    """Robust standard deviation of white noise in a 2-D image.

    The image is filtered with the second-difference operator of Immerkær (1996)
    ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]``, blind to planes, and the noise sigma is the
    median absolute response divided by 0.6745 * 6 (robust to edges).

    Parameters
    ----------
    image : array_like
        2-D image.
    mask : array_like of bool, optional
        Only responses whose 3x3 support lies inside the mask count.

    Returns
    -------
    float
        Estimated noise sigma, in the image's units.
    """
    arr = _as_images(image)
    if arr.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {arr.shape}")
    if min(arr.shape) < 3:
        raise ValueError(f"image must be at least 3x3 pixels, got shape {arr.shape}")
    m = as_mask(mask, arr.shape)
    a = arr
    resp = (
        a[:-2, :-2]
        - 2 * a[:-2, 1:-1]
        + a[:-2, 2:]
        - 2 * a[1:-1, :-2]
        + 4 * a[1:-1, 1:-1]
        - 2 * a[1:-1, 2:]
        + a[2:, :-2]
        - 2 * a[2:, 1:-1]
        + a[2:, 2:]
    )
    if m is not None:
        from scipy import ndimage

        inner = ndimage.binary_erosion(m, structure=np.ones((3, 3), dtype=bool))[1:-1, 1:-1]
        if not inner.any():
            raise ValueError("mask is too thin: no 3x3 neighbourhood lies inside it")
        resp = resp[inner]
    return float(np.median(np.abs(resp)) / (0.6744897501960817 * 6.0))


# --------------------------------------------------------------------------------------------
# Wiener deconvolution
# --------------------------------------------------------------------------------------------
def _transfer(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Real-FFT transfer function of a centred kernel on a periodic grid of ``shape``."""
    padded = np.zeros(shape, dtype=np.float64)
    kh, kw = psf.shape
    padded[:kh, :kw] = psf
    padded = np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.rfft2(padded)


def _laplacian_power(shape: tuple[int, int]) -> np.ndarray:
    """|L(f)|^2 of the 5-point Laplacian on the real-FFT grid of ``shape``."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    lap = 4.0 - 2.0 * np.cos(2 * np.pi * fy) - 2.0 * np.cos(2 * np.pi * fx)
    return lap * lap


def _estimate_balance(
    spectrum: np.ndarray,
    h2: np.ndarray,
    l2: np.ndarray,
    n_pix: int,
    noise_sigma: Callable[[], float],
) -> float:
    """Balance = noise power / signal-prior scale, for a prior spectrum ``c / |L(f)|^2``.

    The periodogram ``P`` of the blurred, noisy frame is modelled as
    ``|H|^2 c / |L|^2 + n``. The noise power ``n`` is the median of ``P`` over frequencies the
    PSF all but removes (``|H|^2 < 0.01``; divided by ln 2, the median of an exponential
    variable), which also counts the aliasing of fibre sampling as noise; when the PSF is too
    narrow to have such frequencies, ``n = noise_sigma() ** 2`` (:func:`estimate_noise`).
    ``c`` is the median of ``(P - n) |L|^2 / |H|^2`` where the PSF passes at least half the power.
    """
    periodogram = np.abs(spectrum) ** 2 / n_pix
    stop = h2 < 0.01
    if np.count_nonzero(stop) >= 16:
        noise = float(np.median(periodogram[stop])) / math.log(2.0)
    else:
        sigma = noise_sigma()
        noise = sigma * sigma
    band = (h2 >= 0.5) & (l2 > 0)
    if not band.any():  # PSF so wide that nothing but DC passes: fall back to all f != 0
        band = l2 > 0
    c = float(np.median((periodogram[band] - noise) * l2[band] / np.maximum(h2[band], 1e-12)))
    floor = 1e-6
    if not (c > 0) or noise <= 0:
        return floor
    return float(max(noise / c, floor))


def wiener(
    image: ArrayLike,
    spacing: float,
    *,
    balance: float | str | None = None,
    mask: ArrayLike | None = None,
    psf: str | ArrayLike = "gaussian",
    seed: int = 0,
) -> np.ndarray:
    """Wiener deconvolution with a PSF matched to the fibre spacing.

    Solves ``X = conj(H) Y / (|H|^2 + balance |L|^2)`` in the Fourier domain, where ``H`` is
    the PSF's transfer function and ``L`` the 5-point Laplacian (the regulariser of
    :func:`skimage.restoration.wiener`).

    Parameters
    ----------
    image : array_like
        ``(H, W)`` image or ``(..., H, W)`` stack (frames are processed independently).
    spacing : float
        Fibre spacing in pixels (``FibreBundle.spacing``); sets the PSF's width.
    balance : float, "unsupervised" or None
        Noise-to-signal regularisation. None (default): estimated per frame as
        ``sigma^2 / c``, with ``sigma`` from :func:`estimate_noise` and ``c`` fitted to the
        frame's power spectrum under the prior ``c / |L(f)|^2`` (see ``docs/metrics.md``).
        A number: used as is (larger = smoother). ``"unsupervised"``: scikit-image's
        :func:`~skimage.restoration.unsupervised_wiener`, which samples the noise and prior
        precisions by Gibbs sampling (slower; ``seed`` fixes its random stream).
    mask : array_like of bool, optional
        ``(H, W)`` field of view. Outside it the frame is replaced by the nearest inside value
        before filtering, and the result is 0 there.
    psf : {"gaussian", "tli"} or array_like
        PSF model passed to :func:`fibre_psf`, or an explicit 2-D kernel (normalised to sum 1).
    seed : int
        Seed of the unsupervised sampler (ignored otherwise).

    Returns
    -------
    numpy.ndarray
        float32 array of the input's shape.

    Notes
    -----
    Each frame is also mirrored by twice the PSF size on every side before the FFT, so the
    periodic boundary of the FFT does not ring at the image border.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> x = np.zeros((32, 32)); x[8:24, 8:24] = 1.0
    >>> blurred = ndimage.convolve(x, fibre_psf(3.0), mode="reflect")
    >>> restored = wiener(blurred, 3.0, balance=1e-3)
    >>> bool(np.abs(restored - x).mean() < np.abs(blurred - x).mean())
    True
    """
    stack = _as_images(image)
    s = _positive(spacing, "spacing")
    m = as_mask(mask, stack.shape[-2:])
    if isinstance(psf, str):
        kernel = fibre_psf(s, kind=psf)
    else:
        kernel = np.asarray(psf, dtype=np.float64)
        if kernel.ndim != 2 or not np.all(np.isfinite(kernel)) or kernel.sum() <= 0:
            raise ValueError(
                f"psf must be 'gaussian', 'tli' or a finite 2-D kernel with a positive sum, got "
                f"shape {kernel.shape}"
            )
        kernel = kernel / kernel.sum()
    unsupervised = False
    bal: float | None = None
    if isinstance(balance, str):
        if balance != "unsupervised":
            raise ValueError(f"balance must be a number, 'unsupervised' or None, got {balance!r}")
        unsupervised = True
    elif balance is not None:
        bal = _positive(balance, "balance")

    fill_idx = nearest_fill_index(m)
    pad = max(8, 2 * max(kernel.shape))

    def _noise(frame: np.ndarray) -> float:
        try:
            return estimate_noise(frame, mask=m)
        except ValueError:  # frame or mask too small for the 3x3 operator: no estimate
            return 0.0

    def _one(frame: np.ndarray) -> np.ndarray:
        work = frame[fill_idx] if fill_idx is not None else frame
        work = np.pad(work, pad, mode="symmetric")
        if unsupervised:
            from skimage.restoration import unsupervised_wiener

            rng = np.random.default_rng(seed)
            out, _ = unsupervised_wiener(work, kernel, clip=False, rng=rng)
            out = np.asarray(out, dtype=np.float64)
        else:
            spectrum = np.fft.rfft2(work)
            h = _transfer(kernel, work.shape)
            h2 = np.abs(h) ** 2
            l2 = _laplacian_power(work.shape)
            b = bal
            if b is None:
                b = _estimate_balance(spectrum, h2, l2, work.size, lambda: _noise(frame))
            out = np.fft.irfft2(np.conj(h) * spectrum / (h2 + b * l2), s=work.shape)
        out = out[pad:-pad, pad:-pad]
        if m is not None:
            out = np.where(m, out, 0.0)
        return out

    return _per_frame(stack, _one)


# --------------------------------------------------------------------------------------------
# sharpening
# --------------------------------------------------------------------------------------------
def sharpen(
    image: ArrayLike,
    *,
    radius: float | None = None,
    amount: float = 1.0,
    mask: ArrayLike | None = None,
    spacing: float | None = None,
) -> np.ndarray:
    """Unsharp mask: ``image + amount * (image - gaussian(image, radius))``.

    The paper's "contrast-enhancement" baseline. Values are not clipped.

    Parameters
    ----------
    image : array_like
        ``(H, W)`` image or ``(..., H, W)`` stack (frames are processed independently).
    radius : float, optional
        Sigma of the Gaussian blur in pixels. Default: ``spacing`` when given (the scale of
        the fibre pattern), else 2 pixels.
    amount : float
        Strength of the added detail (0 returns the image unchanged, as float32).
    mask : array_like of bool, optional
        ``(H, W)`` field of view; outside it the frame is replaced by the nearest inside value
        before blurring, and the result is 0 there.
    spacing : float, optional
        Fibre spacing in pixels, used for the default radius.

    Returns
    -------
    numpy.ndarray
        float32 array of the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> step = np.repeat([[0.25, 0.75]], 8, axis=0).repeat(8, axis=1)
    >>> out = sharpen(step, radius=1.0)
    >>> bool(out.max() > 0.75 and out.min() < 0.25)  # over/undershoot at the edge
    True
    """
    from scipy import ndimage

    stack = _as_images(image)
    m = as_mask(mask, stack.shape[-2:])
    if radius is None:
        r = _positive(spacing, "spacing") if spacing is not None else 2.0
    else:
        r = _positive(radius, "radius")
    try:
        a = float(amount)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"amount must be a number, got {amount!r}") from exc
    if not math.isfinite(a):
        raise ValueError(f"amount must be finite, got {amount!r}")
    fill_idx = nearest_fill_index(m)

    def _one(frame: np.ndarray) -> np.ndarray:
        work = frame[fill_idx] if fill_idx is not None else frame
        blurred = ndimage.gaussian_filter(work, r, mode="reflect")
        out = work + a * (work - blurred)
        if m is not None:
            out = np.where(m, out, 0.0)
        return out

    return _per_frame(stack, _one)


# --------------------------------------------------------------------------------------------
# back-projection onto the measured fibre values
# --------------------------------------------------------------------------------------------
def backproject(
    image: ArrayLike,
    bundle: Any,
    values: ArrayLike | None = None,
    *,
    iterations: int | None = None,
    noise: Any = "auto",
) -> np.ndarray:
    """TLI image made consistent with the fibre values: the no-training baseline.

    A thin wrapper over :func:`napari_cycsr.consistency.project_consistent` (one
    implementation) for use next to :func:`wiener` and :func:`sharpen`: it sharpens the TLI
    image until its Voronoi cell means agree with the measured fibre values up to their
    noise. The result is 0 outside the bundle's field of view.

    Parameters
    ----------
    image : array_like
        ``(H, W)`` TLI image or ``(..., H, W)`` stack on the bundle's grid.
    bundle : FibreBundle
        The fibres the image was reconstructed from.
    values : array_like, optional
        Measured fibre values, ``(N,)`` or ``(..., N)``. Default: ``bundle.sample(image)``,
        the image's values at the fibre centres, which are exactly the measured values when
        ``image`` is the TLI reconstruction of them (and only then).
    iterations : int, optional
        Back-projection steps (default: the projection's, 5 noise-aware, 2 exact).
    noise : "auto", None, float or array_like
        Noise level of the values (``"auto"``: estimated from them; ``None``: exact fit);
        see :func:`~napari_cycsr.consistency.project_consistent`.

    Returns
    -------
    numpy.ndarray
        float32 array of the input's shape.

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle
    >>> sim = simulate_pcle(data.camera()[:96, :96] / 255.0, seed=0)
    >>> backproject(sim.lr, sim.bundle).shape
    (96, 96)
    """
    from .consistency import project_consistent

    stack = _as_images(image)
    if not callable(getattr(bundle, "sample", None)):
        raise TypeError(f"bundle must be a FibreBundle, got {type(bundle).__name__}")
    if values is None:
        values = bundle.sample(stack)
    return project_consistent(stack, bundle, values, iterations=iterations, noise=noise)
