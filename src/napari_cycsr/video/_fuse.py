"""Fusion of registered pCLE frames into one image: HR^, sliding windows, mosaics.

The model (docs/video.md): the unknown image ``X`` lives on a canvas of the reference
frame's grid (``scale`` times finer when asked). Frame ``t``'s fibre ``k`` measured the mean
of the scene over its Voronoi cell; the cell is fixed on the frame grid, and the scene point
that frame pixel ``p`` shows sits at ``T_t^-1(p)`` in the reference frame. So

    v_tk = mean over the pixels u of cell k of  X(T_t^-1(u)),

with ``X`` read by bilinear interpolation, which for a pure translation is exactly the
area of each canvas pixel the shifted frame pixel covers. Fusion solves the least-squares
problem ``min_X sum_t ||A_t X - v_t||^2`` by conjugate gradients on the normal equations
(CGLS), starting from the shift-and-add of the frames' TLI images and stopping when the
residual reaches the noise level (the discrepancy principle, ``||v - A X||^2 <= m sigma^2``
over the ``m`` measurements, the noise ``sigma`` estimated from the values). Starting from
an estimate and stopping early regularises: what no frame measured keeps the starting
image, and the noise is not fitted. This is multi-frame back-projection with a proper
solver: it places every sample at its own sub-pixel position and deblurs the core aperture.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._progress import drain, relay
from ..consistency import upsampled_bundle
from ..fibres import FibreBundle
from ._common import (
    VideoProgress,
    check_bundle,
    check_frames,
    check_index,
    relative_poses,
    rotation,
)
from ._lattice import neighbour_gains
from ._register import DEFAULT_MIN_CONFIDENCE, Registration, frame_values

__all__ = [
    "FusionInfo",
    "Mosaic",
    "estimate_gains",
    "fuse",
    "fuse_video",
    "iter_fuse",
    "iter_fuse_video",
    "leave_one_out",
    "mosaic",
    "pooled_interpolation",
]

#: Largest number of CG iterations by default.
DEFAULT_MAX_ITER = 30
#: Discrepancy principle: stop when the residual RMS reaches this multiple of the noise.
DEFAULT_TOLERANCE = 1.0
#: Share of the measurements held out to choose the number of iterations (noise="auto").
HOLDOUT = 0.05


@dataclass(frozen=True)
class FusionInfo:
    """What a fusion did (``fuse(..., return_info=True)``).

    Attributes
    ----------
    frames : tuple of int
        Frames used.
    left_out : tuple of int
        Frames left out (low confidence, excluded, or outside the canvas).
    iterations : int
        CG iterations run.
    noise : float or None
        Noise level given for the discrepancy principle (None otherwise).
    residual_rms : float
        RMS of ``v - A X`` over the measurements at the end.
    initial_rms : float
        The same for the starting image.
    stopped_by : str
        ``"holdout"`` (iterations chosen by hold-out validation), ``"noise"`` (discrepancy
        principle), ``"stalled"``, ``"max_iter"`` or ``"none"`` (``method="mean"``).
    coverage : ndarray
        Number of frames whose field of view covers each output pixel.
    origin : tuple of float
        Reference-frame coordinates ``(y, x)`` of output pixel ``(0, 0)``.
    """

    frames: tuple[int, ...]
    left_out: tuple[int, ...]
    iterations: int
    noise: float | None
    residual_rms: float
    initial_rms: float
    stopped_by: str
    coverage: np.ndarray = field(repr=False)
    origin: tuple[float, float] = (0.0, 0.0)


# ---------------------------------------------------------------------- the operator


@dataclass
class _FrameOp:
    """Forward operator of one frame: canvas -> cell means of its fibres."""

    index: int
    shift: tuple[int, int, float, float] | None  # (ny, nx, fy, fx) for a translation
    matrix: Any = None  # sparse (N, canvas pixels) otherwise


def _aperture_labels(fine: FibreBundle, radius: float) -> np.ndarray:
    """Voronoi labels kept only within ``radius`` (fine px) of their fibre's centre."""
    labels = fine.labels
    h, w = labels.shape
    yy, xx = np.mgrid[0:h, 0:w]
    lab = np.where(labels >= 0, labels, 0)
    d2 = (yy - fine.centres[lab, 0]) ** 2 + (xx - fine.centres[lab, 1]) ** 2
    out = np.where((labels >= 0) & (d2 <= radius**2), labels, -1).astype(np.int32)
    # every fibre keeps at least its nearest pixel
    ci = np.clip(np.rint(fine.centres).astype(int), 0, [h - 1, w - 1])
    keep = labels[ci[:, 0], ci[:, 1]] == np.arange(fine.n_fibres)
    out[ci[keep, 0], ci[keep, 1]] = np.arange(fine.n_fibres)[keep]
    return out


class _Operator:
    """All frames' forward operators on one canvas (see the module docstring)."""

    def __init__(
        self,
        bundle: FibreBundle,
        shifts: np.ndarray,
        angles: np.ndarray,
        indices: Sequence[int],
        scale: int,
        canvas: str,
        aperture: float | None = None,
    ) -> None:
        self.bundle = bundle
        self.scale = s = int(scale)
        fine = upsampled_bundle(bundle, s)
        self.fine = fine
        labels = fine.labels
        if aperture is not None:
            labels = _aperture_labels(fine, float(aperture) * bundle.spacing * s)
        rows = np.flatnonzero(labels.max(axis=1) >= 0)
        cols = np.flatnonzero(labels.max(axis=0) >= 0)
        if rows.size == 0:
            raise ValueError("the fibre bundle's field of view is empty")
        self.r0, self.r1 = int(rows[0]), int(rows[-1]) + 1
        self.c0, self.c1 = int(cols[0]), int(cols[-1]) + 1
        box = labels[self.r0 : self.r1, self.c0 : self.c1]
        self.hb, self.wb = box.shape
        flat = box.ravel()
        pix = np.flatnonzero(flat >= 0)
        cell = flat[pix].astype(np.int64)
        counts = np.bincount(cell, minlength=bundle.n_fibres)
        self.valid = counts > 0
        self.avg = sp.csr_matrix(
            ((1.0 / counts[cell]).astype(np.float32), (cell, pix)),
            shape=(bundle.n_fibres, flat.size),
        )
        self.avg_t = self.avg.T.tocsr()
        self.box_pix = pix  # FOV pixels of the box (flat)
        self.rotated = bool(np.any(np.asarray(angles)[list(indices)] != 0))
        # canvas: every used frame's box, mapped into the reference frame's fine grid
        h, w = bundle.shape
        self.ref_shape = (h * s, w * s)
        centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
        lo = np.array([0.0, 0.0]) if canvas == "reference" else np.array([np.inf, np.inf])
        hi = np.array(self.ref_shape, np.float64) - 1 if canvas == "reference" else -lo
        corners_f = np.array(
            [
                [self.r0, self.c0],
                [self.r0, self.c1 - 1],
                [self.r1 - 1, self.c0],
                [self.r1 - 1, self.c1 - 1],
            ],
            np.float64,
        )
        self.poses = {}
        for t in indices:
            pts = self._fine_to_ref(corners_f, shifts[t], angles[t], centre)
            lo = np.minimum(lo, pts.min(axis=0))
            hi = np.maximum(hi, pts.max(axis=0))
            self.poses[t] = (np.asarray(shifts[t], np.float64), float(angles[t]))
        self.origin = np.floor(lo).astype(np.int64) - 1  # fine units, reference frame
        end = np.ceil(hi).astype(np.int64) + 2
        self.shape = tuple(int(v) for v in (end - self.origin))
        self.centre = centre
        self.ops = [self._frame_op(t) for t in indices]

    def _fine_to_ref(self, uf: np.ndarray, shift, angle, centre) -> np.ndarray:
        """Fine frame pixel -> fine reference coordinates (float)."""
        s = self.scale
        p = (uf - (s - 1) / 2.0) / s  # frame coordinates
        q = (p - centre - shift) @ rotation(angle) + centre if angle else p - shift
        return q * s + (s - 1) / 2.0

    def _frame_op(self, t: int) -> _FrameOp:
        shift, angle = self.poses[t]
        if angle == 0.0:
            a = -self.scale * shift - self.origin  # canvas = fine frame pixel + a
            n = np.floor(a).astype(np.int64)
            f = a - n
            return _FrameOp(t, (int(n[0]), int(n[1]), float(f[0]), float(f[1])))
        # rotation: a sparse bilinear sampling matrix on the box's FOV pixels
        py, px = np.divmod(self.box_pix, self.wb)
        uf = np.stack([py + self.r0, px + self.c0], axis=1).astype(np.float64)
        c = self._fine_to_ref(uf, shift, angle, self.centre) - self.origin
        n = np.floor(c).astype(np.int64)
        f = c - n
        hc, wc = self.shape
        rows, cols, vals = [], [], []
        for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
            wgt = (f[:, 0] if dy else 1 - f[:, 0]) * (f[:, 1] if dx else 1 - f[:, 1])
            yy, xx = n[:, 0] + dy, n[:, 1] + dx
            ok = (yy >= 0) & (yy < hc) & (xx >= 0) & (xx < wc)
            rows.append(self.box_pix[ok])
            cols.append(yy[ok] * wc + xx[ok])
            vals.append(wgt[ok])
        warp = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self.hb * self.wb, hc * wc),
        )
        mat = (self.avg @ warp).astype(np.float32).tocsr()
        return _FrameOp(t, None, mat)

    # -- products
    def _window(self, op: _FrameOp) -> tuple[slice, slice]:
        ny, nx = op.shift[0], op.shift[1]
        return (
            slice(self.r0 + ny, self.r0 + ny + self.hb),
            slice(self.c0 + nx, self.c0 + nx + self.wb),
        )

    def forward_one(self, x: np.ndarray, op: _FrameOp) -> np.ndarray:
        if op.shift is None:
            return op.matrix @ x.ravel()
        ny, nx, fy, fx = op.shift
        y0, x0 = self.r0 + ny, self.c0 + nx
        hb, wb = self.hb, self.wb
        top = x[y0 : y0 + hb + 1, x0 : x0 + wb + 1]
        row = np.multiply(top[:, :-1], np.float32(1 - fx))
        row += np.float32(fx) * top[:, 1:]
        img = np.multiply(row[:-1], np.float32(1 - fy))
        img += np.float32(fy) * row[1:]
        return self.avg @ img.ravel()

    def adjoint_one(self, r: np.ndarray, op: _FrameOp, out: np.ndarray) -> None:
        if op.shift is None:
            out += (op.matrix.T @ r).reshape(self.shape)
            return
        ny, nx, fy, fx = op.shift
        y0, x0 = self.r0 + ny, self.c0 + nx
        hb, wb = self.hb, self.wb
        z = (self.avg_t @ r).reshape(hb, wb)
        # the transpose of the two linear interpolations: along x, then along y
        row = np.empty((hb, wb + 1), np.float32)
        np.multiply(z, np.float32(1 - fx), out=row[:, :-1])
        row[:, -1] = 0.0
        row[:, 1:] += np.float32(fx) * z
        out[y0 : y0 + hb, x0 : x0 + wb + 1] += np.float32(1 - fy) * row
        out[y0 + 1 : y0 + hb + 1, x0 : x0 + wb + 1] += np.float32(fy) * row

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.stack([self.forward_one(x, op) for op in self.ops])

    def adjoint(self, r: np.ndarray) -> np.ndarray:
        out = np.zeros(self.shape, np.float32)
        for k, op in enumerate(self.ops):
            self.adjoint_one(r[k], op, out)
        return out

    def splat(self, images: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shift-and-add of fine frame-grid images (box) onto the canvas: (sum, weight)."""
        num = np.zeros(self.shape, np.float32)
        den = np.zeros(self.shape, np.float32)
        for k, op in enumerate(self.ops):
            img = images[k]
            if op.shift is None:
                # the transpose of the bilinear sampling, without the cell averaging
                py, px = np.divmod(self.box_pix, self.wb)
                uf = np.stack([py + self.r0, px + self.c0], axis=1).astype(np.float64)
                shift, angle = self.poses[op.index]
                c = self._fine_to_ref(uf, shift, angle, self.centre) - self.origin
                n = np.floor(c).astype(np.int64)
                f = c - n
                vals = img.ravel()[self.box_pix]
                hc, wc = self.shape
                for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
                    wgt = (f[:, 0] if dy else 1 - f[:, 0]) * (f[:, 1] if dx else 1 - f[:, 1])
                    yy, xx = n[:, 0] + dy, n[:, 1] + dx
                    ok = (yy >= 0) & (yy < hc) & (xx >= 0) & (xx < wc)
                    idx = yy[ok] * wc + xx[ok]
                    num.reshape(-1)[:] += np.bincount(idx, wgt[ok] * vals[ok], hc * wc)
                    den.reshape(-1)[:] += np.bincount(idx, wgt[ok], hc * wc)
                continue
            ny, nx, fy, fx = op.shift
            y0, x0 = self.r0 + ny, self.c0 + nx
            hb, wb = self.hb, self.wb
            for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
                wgt = (fy if dy else 1 - fy) * (fx if dx else 1 - fx)
                sl = (slice(y0 + dy, y0 + dy + hb), slice(x0 + dx, x0 + dx + wb))
                num[sl] += wgt * img * weights
                den[sl] += wgt * weights
        return num, den


# ---------------------------------------------------------------------- inputs


def _poses(shifts: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """(shifts, angles, confidence or None, threshold) from a Registration or an array."""
    if isinstance(shifts, Registration):
        if shifts.n_frames != n:
            raise ValueError(f"the registration has {shifts.n_frames} frames, the video {n}")
        return shifts.shifts, shifts.angles, shifts.confidence, shifts.min_confidence
    arr = np.asarray(shifts, np.float64)
    if arr.shape != (n, 2):
        raise ValueError(
            f"shifts must be a Registration or an array of shape ({n}, 2) (dy, dx per frame), "
            f"got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("shifts contain NaN or inf")
    return arr, np.zeros(n), None, DEFAULT_MIN_CONFIDENCE


def estimate_gains(
    values: Any,
    bundle: FibreBundle,
    shifts: Any = None,
    *,
    iterations: int = 2,
    frames_used: Sequence[int] | None = None,
) -> np.ndarray:
    """Per-core gains (the cores' fixed transmission pattern) from the video itself.

    For raw frames without a background (flat-field) frame. A first estimate compares each
    core's temporal mean with its neighbours' (right when the scene moves by several core
    spacings); then, ``iterations`` times, the gain-corrected values are fused over the
    whole registered video, the fused scene is moved back into every frame to predict what
    each core should have measured, and the gain is the least-squares ratio of measured to
    predicted values. The scene moves, the gains stay: that separates them.

    Parameters
    ----------
    values : array_like, shape (T, N)
        Core values of the frames (not flat-fielded).
    bundle : FibreBundle
        The fibres.
    shifts : Registration or array_like, shape (T, 2), optional
        Poses of the frames; without them only the first estimate is made.
    iterations : int, optional
        Fusion rounds. Default 2.
    frames_used : sequence of int, optional
        Frames to use (default all, or the good ones of a Registration).

    Returns
    -------
    ndarray, shape (N,), float32
        Gains with median 1: divide the values by them.

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle_video
    >>> vid = simulate_pcle_video(data.grass()[:160, :160], 8, step=1.5, gain_sd=0.15)
    >>> g = estimate_gains(vid.values, vid.bundle, vid.shifts)
    >>> bool(np.std(vid.gains / g) < 0.5 * np.std(vid.gains))
    True
    """
    bundle = check_bundle(bundle)
    v = np.asarray(values, np.float32)
    gains = neighbour_gains(v, bundle)
    if shifts is None or int(iterations) <= 0:
        return gains
    n = v.shape[0]
    sh, an, conf, thr = _poses(shifts, n)
    first = shifts.reference if isinstance(shifts, Registration) else 0
    used, _ = _select(n, conf, thr, None, first, frames_used)
    if not used:
        return gains
    ref = used[0]
    for _ in range(int(iterations)):
        x, _, op = _fuse_values(
            v / gains[None, :],
            bundle,
            sh,
            an,
            used,
            reference=ref,
            scale=1,
            canvas="mosaic",
            method="solve",
            noise="auto",
            tolerance=DEFAULT_TOLERANCE,
            max_iter=DEFAULT_MAX_ITER,
        )
        prediction = np.full(v.shape, np.nan, np.float32)
        prediction[used] = op.forward(x)
        prediction[:, ~op.valid] = np.nan
        gains = neighbour_gains(v, bundle, prediction=prediction)
    return gains


def _resolve_gains(
    gains: Any, values: np.ndarray, bundle: FibreBundle, shifts: Any
) -> np.ndarray | None:
    if gains is None or gains is False:
        return None
    if gains is True:
        return estimate_gains(values, bundle, shifts)
    if isinstance(gains, str):
        raise ValueError(f"gains must be None, True or an array, got {gains!r}")
    g = np.asarray(gains, np.float64)
    if g.shape != (bundle.n_fibres,) or not np.isfinite(g).all() or (g <= 0).any():
        raise ValueError(
            f"gains must be {bundle.n_fibres} positive finite numbers (one per fibre), "
            f"got shape {g.shape}"
        )
    return g.astype(np.float32)


def _check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 4:
        raise ValueError(f"scale must be an integer from 1 to 4, got {scale!r}")
    return int(scale)


# ---------------------------------------------------------------------- the solver


def _iter_solve(
    op: _Operator,
    values: np.ndarray,
    x0: np.ndarray,
    *,
    noise: float | None,
    tolerance: float,
    max_iter: int,
    holdout: float = 0.0,
    seed: int = 0,
) -> Generator[int, None, tuple[np.ndarray, int, float, float, str]]:
    """CGLS from ``x0``; stops at the noise level, at the best hold-out error, or stalls.

    A generator: yields the iteration number after each iteration, returns the result.

    With ``holdout > 0`` that share of the measurements (random, seeded) is not fitted:
    their prediction error is watched, and the iterate where it was lowest is returned
    (stopped after it rose for three iterations in a row).
    """
    valid = np.isfinite(values) & op.valid[None, :]
    b = np.where(valid, values, 0.0).astype(np.float32)
    fit = valid.copy()
    check = np.zeros_like(valid)
    if holdout > 0:
        pick = np.random.default_rng(seed).random(valid.shape) < holdout
        check = valid & pick
        fit = valid & ~pick
    mask = fit.astype(np.float32)
    m = int(fit.sum())
    x = x0.astype(np.float32).copy()
    r_all = b - op.forward(x)
    r = r_all * mask
    rr = float((r * r).sum())
    initial = np.sqrt(rr / max(m, 1))

    def val_err(res: np.ndarray) -> float:
        return float((res[check] ** 2).sum())

    best_x, best_err, best_it, rising = x.copy(), val_err(r_all), 0, 0
    target = None if noise is None else (tolerance * noise) ** 2 * m
    if target is not None and rr <= target:
        return x, 0, initial, initial, "noise"
    s = op.adjoint(r)
    p = s.copy()
    gamma = float((s * s).sum())
    stopped = "max_iter"
    it = 0
    for it in range(1, max_iter + 1):
        if gamma <= 0:
            stopped, it = "stalled", it - 1
            break
        q_all = op.forward(p)
        q = q_all * mask
        qq = float((q * q).sum())
        if qq <= 0:
            stopped, it = "stalled", it - 1
            break
        alpha = gamma / qq
        yield it
        x += alpha * p
        r_all -= alpha * q_all
        r = r_all * mask
        rr_new = float((r * r).sum())
        if holdout > 0:
            err = val_err(r_all)
            if err < best_err:
                best_x, best_err, best_it, rising = x.copy(), err, it, 0
            else:
                rising += 1
                if rising >= 3:
                    stopped = "holdout"
                    break
        if target is not None and rr_new <= target:
            rr = rr_new
            stopped = "noise"
            break
        if rr - rr_new <= 1e-4 * rr:
            rr = rr_new
            stopped = "stalled"
            break
        rr = rr_new
        s = op.adjoint(r)
        gamma_new = float((s * s).sum())
        p = s + (gamma_new / gamma) * p
        gamma = gamma_new
    if holdout > 0:
        x, it = best_x, best_it
        r = (b - op.forward(x)) * mask
        rr = float((r * r).sum())
        stopped = "holdout" if stopped in ("holdout", "max_iter", "stalled") else stopped
    return x, it, float(np.sqrt(rr / max(m, 1))), float(initial), stopped


def _steps(
    gen: Generator[int, None, Any], total: int, stage: str
) -> Generator[VideoProgress, None, Any]:
    """Iterations of a solver as progress events; returns the solver's result."""
    return (yield from relay(gen, lambda it: VideoProgress(int(it), max(int(total), 1), stage)))


def _start_image(op: _Operator, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift-and-add of the frames' TLI images (fine grid), and the coverage."""
    v = np.where(np.isfinite(values), values, 0.0)
    tli = op.fine.reconstruct(v)[:, op.r0 : op.r1, op.c0 : op.c1]
    fov = op.fine.fov_mask[op.r0 : op.r1, op.c0 : op.c1].astype(np.float32)
    num, den = op.splat(tli, fov)
    x0 = np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)
    if (den > 1e-6).any() and not (den > 1e-6).all():
        from scipy import ndimage

        idx = ndimage.distance_transform_edt(
            den <= 1e-6, return_distances=False, return_indices=True
        )
        x0 = x0[tuple(idx)]
    cover = den  # frames covering each canvas pixel (bilinear weights of FOV pixels)
    return x0, cover


def _fuse_values(*args: Any, **kwargs: Any) -> tuple[np.ndarray, FusionInfo, _Operator]:
    """:func:`_iter_fuse_values` run to its end."""
    return drain(_iter_fuse_values(*args, **kwargs))


def _iter_fuse_values(
    values: np.ndarray,
    bundle: FibreBundle,
    shifts: np.ndarray,
    angles: np.ndarray,
    used: list[int],
    *,
    reference: int,
    scale: int,
    canvas: str,
    method: str,
    noise: Any,
    tolerance: float,
    max_iter: int,
    aperture: float | None = None,
) -> Generator[VideoProgress, None, tuple[np.ndarray, FusionInfo, _Operator]]:
    rel_shifts, rel_angles = relative_poses(shifts, angles, reference)
    op = _Operator(bundle, rel_shifts, rel_angles, used, scale, canvas, aperture)
    vals = values[used]
    x0, cover = _start_image(op, vals)
    if method == "mean":
        x, it, res, init, stopped, sigma = x0, 0, float("nan"), float("nan"), "none", None
    else:
        if noise is None:
            sigma = None
            x, it, res, init, stopped = yield from _steps(
                _iter_solve(op, vals, x0, noise=None, tolerance=tolerance, max_iter=max_iter),
                max_iter,
                "fit",
            )
        elif isinstance(noise, str):
            if noise != "auto":
                raise ValueError(f"noise must be 'auto', None or a number, got {noise!r}")
            # hold-out validation picks the iteration count, then all values are fitted
            _, best, _, _, _ = yield from _steps(
                _iter_solve(
                    op,
                    vals,
                    x0,
                    noise=None,
                    tolerance=tolerance,
                    max_iter=max_iter,
                    holdout=HOLDOUT,
                ),
                max_iter,
                "validate",
            )
            x, it, res, init, _ = yield from _steps(
                _iter_solve(op, vals, x0, noise=None, tolerance=tolerance, max_iter=best),
                best,
                "fit",
            )
            stopped, sigma = "holdout", None
        else:
            sigma = float(noise)
            if not np.isfinite(sigma) or sigma < 0:
                raise ValueError(f"noise must be a non-negative number, got {noise!r}")
            x, it, res, init, stopped = yield from _steps(
                _iter_solve(op, vals, x0, noise=sigma, tolerance=tolerance, max_iter=max_iter),
                max_iter,
                "fit",
            )
        x[cover <= 1e-6] = 0.0
    origin = tuple(float((o - (scale - 1) / 2.0) / scale) for o in op.origin)
    info = FusionInfo(
        frames=tuple(int(t) for t in used),
        left_out=(),
        iterations=int(it),
        noise=sigma,
        residual_rms=float(res),
        initial_rms=float(init),
        stopped_by=stopped,
        coverage=cover,
        origin=origin,  # type: ignore[arg-type]
    )
    return x, info, op


def _crop_reference(x: np.ndarray, op: _Operator) -> np.ndarray:
    oy, ox = (-op.origin).astype(int)
    h, w = op.ref_shape
    return x[oy : oy + h, ox : ox + w]


def _select(
    n: int,
    confidence: np.ndarray | None,
    min_confidence: float,
    exclude: Any,
    reference: int,
    frames: Any = None,
) -> tuple[list[int], list[int]]:
    candidates = list(range(n)) if frames is None else sorted({int(f) % n for f in frames})
    excluded = set() if exclude is None else {int(e) % n for e in np.atleast_1d(exclude)}
    used, left = [], []
    for t in candidates:
        bad = confidence is not None and confidence[t] < min_confidence
        if t in excluded or bad:
            left.append(t)
        else:
            used.append(t)
    if confidence is not None and confidence[reference] < min_confidence:
        raise ValueError(
            f"the reference frame {reference} was not registered (confidence "
            f"{confidence[reference]:.2f} < {min_confidence}); choose another reference"
        )
    return used, left


def _prepare(
    frames: Any,
    bundle: FibreBundle | None,
    shifts: Any,
    *,
    kind: str,
    background: Any,
    gains: Any,
) -> tuple[np.ndarray, FibreBundle, np.ndarray, np.ndarray, np.ndarray | None, float]:
    if bundle is None:
        from ._lattice import estimate_lattice

        bundle = estimate_lattice(frames)
    bundle = check_bundle(bundle)
    values_given = np.ndim(frames) == 2 and np.shape(frames)[-1] == bundle.n_fibres
    if not values_given:
        frames = check_frames(frames)
        check_bundle(bundle, frames.shape[1:])
    values = frame_values(frames, bundle, kind=kind, background=background)
    n = values.shape[0]
    sh, an, conf, thr = _poses(shifts, n)
    g = _resolve_gains(gains, values, bundle, shifts)
    if g is not None:
        values = values / g[None, :]
    return values, bundle, sh, an, conf, thr


def fuse(
    frames: Any,
    bundle: FibreBundle | None,
    shifts: Any,
    *,
    reference: int = 0,
    scale: int = 1,
    method: str = "solve",
    frames_used: Sequence[int] | None = None,
    exclude: Any = None,
    min_confidence: float | None = None,
    kind: str = "auto",
    background: Any = None,
    gains: Any = None,
    noise: Any = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    max_iter: int = DEFAULT_MAX_ITER,
    aperture: float | None = None,
    canvas: str = "reference",
    return_info: bool = False,
    progress: Any = None,
) -> Any:
    """Fuse registered frames into one image on the reference frame's grid (HR^).

    Parameters
    ----------
    frames : array_like, shape (T, H, W), or (T, N) fibre values
        The video on the bundle's grid (raw or reconstructed frames, numpy or dask), or
        the fibre values of every frame.
    bundle : FibreBundle or None
        The fibres. ``None``: estimated from the (reconstructed) frames with
        :func:`napari_cycsr.video.estimate_lattice`.
    shifts : Registration or array_like, shape (T, 2)
        The poses from :func:`register` (its confidence leaves bad frames out, its angles
        are used), or ``(dy, dx)`` per frame in the convention of :class:`Registration`.
    reference : int, optional
        Frame whose grid the output is on. Default 0.
    scale : int, optional
        Output pixels per frame pixel along each axis (1 to 4). Default 1.
    method : {"solve", "mean"}, optional
        ``"solve"`` (default): least squares on the cell means of every frame (module
        docstring); ``"mean"``: only the shift-and-add of the frames' TLI images it starts
        from.
    frames_used : sequence of int, optional
        Only these frames (default all).
    exclude : int or sequence of int, optional
        Frames to leave out (e.g. the frame a leave-one-out reference is for).
    min_confidence : float, optional
        With a :class:`Registration`: frames under this confidence are left out (default:
        the registration's own threshold).
    kind : {"auto", "raw", "reconstructed"}, optional
        What the frames are (see :func:`frame_values`).
    background : array_like, shape (H, W), optional
        Flat-field frame for raw frames.
    gains : None, True or array_like of shape (N,), optional
        Per-fibre gains to divide the values by: ``True`` estimates them from the
        registered video (:func:`estimate_gains`; for raw frames without a background
        frame). Default None (the values are used as they are).
    noise : "auto", None or float, optional
        How the solver knows when to stop fitting. ``"auto"`` (default): hold-out
        validation: 5 % of the values (random, seeded) are set aside, the conjugate
        gradients run on the rest while the error on the held-out values is watched, and
        the iteration where it was lowest (where further fitting starts to model noise) is
        the number of iterations of the final fit on all values. A float: the noise
        standard deviation of the values, for the discrepancy principle (stop when the
        residual RMS reaches ``tolerance * noise``). ``None``: ``max_iter`` iterations or
        until the residual stalls.
    tolerance : float, optional
        Stop when the residual RMS is ``tolerance * noise``. Default 1.
    max_iter : int, optional
        Largest number of conjugate-gradient iterations. Default 30.
    aperture : float, optional
        What one core measures: by default (None) the mean over its whole Voronoi cell, the
        forward model of Ravi et al.; a number ``r``: the mean over the part of the cell
        within ``r`` core spacings of the centre (the light-carrying core of a real bundle
        is smaller than its cell; docs/video.md compares both on the real video).
    canvas : {"reference", "mosaic"}, optional
        Output on the reference frame's grid (default), or on a canvas covering every
        fused frame (its origin is in the info; see :func:`mosaic`).
    return_info : bool, optional
        Also return a :class:`FusionInfo`.
    progress : callable, optional
        Called with a :class:`VideoProgress` after each solver iteration (stages
        ``"validate"`` and ``"fit"``).

    Returns
    -------
    ndarray, shape (H * scale, W * scale), float32
        The fused image (0 where no frame saw the scene), and the :class:`FusionInfo` when
        ``return_info``.

    Raises
    ------
    ValueError
        Fewer than one usable frame, frames that do not match the bundle, shifts of the
        wrong shape, a reference frame that was not registered, options out of range.

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle_video
    >>> vid = simulate_pcle_video(data.camera()[:200, :200], 6, seed=0)
    >>> hr_hat = fuse(vid.values, vid.bundle, vid.shifts)
    >>> hr_hat.shape == vid.bundle.shape
    True
    """
    gen = iter_fuse(
        frames,
        bundle,
        shifts,
        reference=reference,
        scale=scale,
        method=method,
        frames_used=frames_used,
        exclude=exclude,
        min_confidence=min_confidence,
        kind=kind,
        background=background,
        gains=gains,
        noise=noise,
        tolerance=tolerance,
        max_iter=max_iter,
        aperture=aperture,
        canvas=canvas,
        return_info=return_info,
    )
    return drain(gen, progress)


def iter_fuse(
    frames: Any,
    bundle: FibreBundle | None,
    shifts: Any,
    *,
    reference: int = 0,
    scale: int = 1,
    method: str = "solve",
    frames_used: Sequence[int] | None = None,
    exclude: Any = None,
    min_confidence: float | None = None,
    kind: str = "auto",
    background: Any = None,
    gains: Any = None,
    noise: Any = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    max_iter: int = DEFAULT_MAX_ITER,
    aperture: float | None = None,
    canvas: str = "reference",
    return_info: bool = False,
) -> Generator[VideoProgress, None, Any]:
    """Generator form of :func:`fuse`: yields progress per iteration, *returns* the result.

    ``image = yield from iter_fuse(...)``; stop iterating to stop (nothing is returned).
    """
    if method not in ("solve", "mean"):
        raise ValueError(f"method must be 'solve' or 'mean', got {method!r}")
    if canvas not in ("reference", "mosaic"):
        raise ValueError(f"canvas must be 'reference' or 'mosaic', got {canvas!r}")
    scale = _check_scale(scale)
    if aperture is not None and not (np.isfinite(aperture) and 0.05 <= aperture <= 2.0):
        raise ValueError(f"aperture must be None or 0.05 to 2 core spacings, got {aperture!r}")
    max_iter = int(max_iter)
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    if not (np.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    values, bundle, sh, an, conf, thr = _prepare(
        frames, bundle, shifts, kind=kind, background=background, gains=gains
    )
    n = values.shape[0]
    reference = check_index(reference, n)
    thr = thr if min_confidence is None else float(min_confidence)
    used, left = _select(n, conf, thr, exclude, reference, frames_used)
    if not used:
        raise ValueError(
            "no frame to fuse: every frame was excluded or registered with a confidence "
            f"under {thr}"
        )
    x, info, op = yield from _iter_fuse_values(
        values,
        bundle,
        sh,
        an,
        used,
        reference=reference,
        scale=scale,
        canvas=canvas,
        method=method,
        noise=noise,
        tolerance=tolerance,
        max_iter=max_iter,
        aperture=aperture,
    )
    if canvas == "reference":
        x = _crop_reference(x, op)
        cover = _crop_reference(info.coverage, op)
        info = FusionInfo(
            frames=info.frames,
            left_out=tuple(left),
            iterations=info.iterations,
            noise=info.noise,
            residual_rms=info.residual_rms,
            initial_rms=info.initial_rms,
            stopped_by=info.stopped_by,
            coverage=cover,
            origin=(0.0, 0.0),
        )
    else:
        info = FusionInfo(**{**info.__dict__, "left_out": tuple(left)})
    x = np.ascontiguousarray(x, dtype=np.float32)
    return (x, info) if return_info else x


def leave_one_out(
    frames: Any,
    bundle: FibreBundle | None,
    shifts: Any,
    frame: int,
    **kwargs: Any,
) -> Any:
    """HR^ for one frame built from the *other* frames of its video (a reference for it).

    The fused image on frame ``frame``'s grid, with that frame left out: an honest reference
    to score a result for that frame against, since the frame itself does not leak into it.

    Parameters
    ----------
    frames, bundle, shifts
        As :func:`fuse`.
    frame : int
        The frame to build the reference for (it must have been registered).
    **kwargs
        Any other option of :func:`fuse` (``scale``, ``method``, ``noise`` ...).

    Returns
    -------
    ndarray, shape (H * scale, W * scale), float32
        (and the :class:`FusionInfo` with ``return_info=True``).

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle_video
    >>> vid = simulate_pcle_video(data.camera()[:200, :200], 5, seed=0)
    >>> ref = leave_one_out(vid.values, vid.bundle, vid.shifts, 2)
    >>> ref.shape == vid.bundle.shape
    True
    """
    n = int(np.shape(frames)[0])
    t = check_index(frame, n, "frame")
    exclude = set() if kwargs.get("exclude") is None else set(np.atleast_1d(kwargs["exclude"]))
    kwargs["exclude"] = sorted(exclude | {t})
    kwargs["reference"] = t
    return fuse(frames, bundle, shifts, **kwargs)


@dataclass(frozen=True)
class Mosaic:
    """Result of :func:`mosaic`.

    Attributes
    ----------
    image : ndarray, shape (Hm, Wm), float32
        The canvas (0 where no frame saw the scene).
    origin : tuple of float
        Reference-frame coordinates ``(y, x)`` of canvas pixel ``(0, 0)``: in napari, the
        layer's ``translate`` is ``origin`` times the reference layer's scale (plus its
        translate) and its ``scale`` is that scale over ``scale``.
    scale : int
        Canvas pixels per frame pixel.
    coverage : ndarray, shape (Hm, Wm), float32
        Number of frames covering each canvas pixel.
    info : FusionInfo
    """

    image: np.ndarray
    origin: tuple[float, float]
    scale: int
    coverage: np.ndarray
    info: FusionInfo


def mosaic(
    frames: Any,
    bundle: FibreBundle | None,
    shifts: Any,
    *,
    reference: int = 0,
    scale: int = 1,
    method: str = "mean",
    **kwargs: Any,
) -> Mosaic:
    """One canvas covering every registered frame of a video (as PyFibreBundle's Mosaic).

    Parameters
    ----------
    frames, bundle, shifts, reference, scale
        As :func:`fuse`.
    method : {"mean", "solve"}, optional
        ``"mean"`` (default, fast): shift-and-add of the frames' TLI images; ``"solve"``:
        the least-squares fusion of :func:`fuse` over the whole canvas.
    **kwargs
        Other options of :func:`fuse`.

    Returns
    -------
    Mosaic
    """
    image, info = fuse(
        frames,
        bundle,
        shifts,
        reference=reference,
        scale=scale,
        method=method,
        canvas="mosaic",
        return_info=True,
        **kwargs,
    )
    return Mosaic(
        image=image, origin=info.origin, scale=int(scale), coverage=info.coverage, info=info
    )


def iter_fuse_video(
    frames: Any,
    bundle: FibreBundle | None,
    shifts: Any,
    *,
    window: int = 8,
    scale: int = 1,
    **kwargs: Any,
) -> Generator[VideoProgress, None, np.ndarray]:
    """Generator form of :func:`fuse_video`: yields progress, *returns* the stack."""
    window = int(window)
    if window < 1:
        raise ValueError(f"window must be >= 1 frame, got {window}")
    scale = _check_scale(scale)
    kind = kwargs.pop("kind", "auto")
    background = kwargs.pop("background", None)
    gains = kwargs.pop("gains", None)
    min_conf = kwargs.pop("min_confidence", None)
    for bad in ("reference", "frames_used", "canvas", "return_info"):
        if bad in kwargs:
            raise TypeError(f"fuse_video() sets {bad!r} itself")
    values, bundle, sh, an, conf, thr = _prepare(
        frames, bundle, shifts, kind=kind, background=background, gains=gains
    )
    thr = thr if min_conf is None else float(min_conf)
    n = values.shape[0]
    h, w = bundle.shape
    out = np.zeros((n, h * scale, w * scale), np.float32)
    yield VideoProgress(0, n, "fuse")
    good = np.ones(n, bool) if conf is None else conf >= thr
    for t in range(n):
        if good[t]:
            lo = max(0, min(t - (window - 1) // 2, n - window))
            near = [u for u in range(lo, min(n, lo + window)) if good[u]]
            out[t] = fuse(
                values,
                bundle,
                sh,
                reference=t,
                scale=scale,
                frames_used=near,
                gains=None,
                **kwargs,
            )
        yield VideoProgress(t + 1, n, "fuse")
    return out


def fuse_video(
    frames: Any,
    bundle: FibreBundle | None,
    shifts: Any,
    *,
    window: int = 8,
    scale: int = 1,
    progress: Any = None,
    **kwargs: Any,
) -> np.ndarray:
    """Sliding-window HR^ video: each output frame fused from its ``window`` neighbours.

    Parameters
    ----------
    frames, bundle, shifts, scale
        As :func:`fuse`.
    window : int, optional
        Frames per output frame (the frame itself and its nearest good neighbours, centred
        where the video allows). Default 8.
    progress : callable, optional
        Called with each :class:`VideoProgress`.
    **kwargs
        Other options of :func:`fuse` (``method``, ``noise``, ``min_confidence`` ...).

    Returns
    -------
    ndarray, shape (T, H * scale, W * scale), float32
        Frames that were not registered are all zero.
    """
    gen = iter_fuse_video(frames, bundle, shifts, window=window, scale=scale, **kwargs)
    return drain(gen, progress)


def pooled_interpolation(
    values: Any,
    bundle: FibreBundle,
    shifts: Any,
    *,
    reference: int = 0,
    frames_used: Sequence[int] | None = None,
) -> np.ndarray:
    """The simple baseline: every frame's fibre values at their scene positions, interpolated.

    Each core ``c`` of frame ``t`` saw the scene point ``T_t^-1(c)`` of the reference frame
    (``c - shift`` for a translation); all these samples are pooled and interpolated
    linearly (Delaunay) onto the reference grid. Slow for many frames (one triangulation of
    all samples): it is the yardstick :func:`fuse` is measured against.

    Parameters
    ----------
    values : array_like, shape (T, N)
        Fibre values of every frame.
    bundle : FibreBundle
        The fibres.
    shifts : Registration or array_like, shape (T, 2)
        Poses (as :func:`fuse`).
    reference : int, optional
        Output grid.
    frames_used : sequence of int, optional
        Frames to pool (default: all, or the good ones of a Registration).

    Returns
    -------
    ndarray, shape (H, W), float32
        0 outside the convex hull of the pooled samples.
    """
    from scipy.interpolate import LinearNDInterpolator

    bundle = check_bundle(bundle)
    v = np.asarray(values, np.float64)
    if v.ndim != 2 or v.shape[1] != bundle.n_fibres:
        raise ValueError(f"values must be (T, N) with N = {bundle.n_fibres}, got {v.shape}")
    n = v.shape[0]
    sh, an, conf, thr = _poses(shifts, n)
    reference = check_index(reference, n)
    used, _ = _select(n, conf, thr, None, reference, frames_used)
    rel_s, rel_a = relative_poses(sh, an, reference)
    h, w = bundle.shape
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    pts, vals = [], []
    for t in used:
        c = bundle.centres
        q = (c - centre - rel_s[t]) @ rotation(rel_a[t]) + centre if rel_a[t] else c - rel_s[t]
        ok = np.isfinite(v[t])
        pts.append(q[ok])
        vals.append(v[t][ok])
    pts_all = np.concatenate(pts)
    pts_all, first = np.unique(np.round(pts_all, 9), axis=0, return_index=True)
    interp = LinearNDInterpolator(pts_all, np.concatenate(vals)[first], fill_value=0.0)
    yy, xx = np.mgrid[0:h, 0:w]
    return interp(yy, xx).astype(np.float32)
