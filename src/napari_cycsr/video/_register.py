"""Registration of pCLE frames: sub-pixel shifts (and optionally rotations) with a confidence.

How it works (docs/video.md has the full account):

1. **Fibre-pattern-free signal.** With a bundle, each frame's core values (raw frames) are
   reconstructed by TLI; reconstructed frames are used as they are. The signal is taken
   minus its mean inside the field of view (FOV), tapered smoothly to zero at the FOV edge,
   and band-limited with a Gaussian of ``band / spacing`` cycles/px, cut at twice that:
   the honeycomb of the cores and most of their fixed pattern lie above the band. The band
   is resampled, exactly (a crop of the Fourier spectrum), onto a grid ``d`` times coarser
   (``d`` about 0.8 core spacings), where everything else happens.
2. **Coarse shift.** Phase correlation of the two tapered signals; the peak (with a
   parabolic sub-sample fit) gives the shift to about a coarse pixel.
3. **Refinement.** Both signals are multiplied by the *common* window
   ``w(q) w(q + shift)``: the same part of the scene in both frames, so that the window
   (the FOV edge, a fixed thing) cannot pull the estimate towards zero. The shift is then
   corrected by a weighted least-squares fit of the phase slope of their cross-power
   spectrum, and the window updated; three rounds.
4. **Confidence.** The normalised cross-correlation of the two windowed band-limited
   signals at the final shift (computed in the Fourier domain, Parseval), set to zero when
   the frames share less than ``min_overlap`` of the FOV. Blank, defocused, wrongly
   registered or non-overlapping frames score low and :attr:`Registration.good` leaves
   them out downstream.
5. **Chaining.** Frames are registered outwards from the reference, each against an
   *anchor*: the reference at first; when a frame's overlap with its anchor falls below
   ``keyframe_overlap``, the last good frame becomes the new anchor and the frame is
   registered against it, and the poses compose. Errors add up only at the (few) anchor
   changes, not at every frame.
6. **Rotation** (``rotation=True``): after the translation, Gauss-Newton on (angle, dy, dx)
   over the common window, with cubic-spline resampling on the coarse grid. Meant for small
   rotations between a frame and its anchor (a few degrees).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from .._progress import drain
from ..fibres import FibreBundle, bundle_fov, estimate_spacing
from ._common import (
    VideoProgress,
    check_bundle,
    check_frames,
    check_index,
    compose,
    iter_frames,
    relative_poses,
    rotation,
)
from ._lattice import estimate_video_spacing

__all__ = ["Registration", "iter_register", "register"]

#: Gaussian band of the registration signal, in cycles per core spacing (``f0 * spacing``).
DEFAULT_BAND = 0.3
#: The band is cut (smoothly) at this multiple of its Gaussian width.
CUT = 2.0
#: Default confidence under which a frame is left out downstream.
DEFAULT_MIN_CONFIDENCE = 0.5
#: Default smallest share of the FOV two frames must have in common.
DEFAULT_MIN_OVERLAP = 0.25
#: Default overlap with the anchor under which the chain moves its anchor on.
DEFAULT_KEYFRAME_OVERLAP = 0.6


@dataclass(frozen=True)
class Registration:
    """Result of :func:`register`.

    Attributes
    ----------
    shifts : ndarray, shape (T, 2), float64
        ``(dy, dx)`` per frame, in pixels: the position in frame ``t`` of a scene point that
        sits at ``(y, x)`` in the reference frame is ``(y + dy, x + dx)`` (with a rotation:
        ``R(angle) ((y, x) - c) + c + (dy, dx)``, ``c`` the frame centre
        ``((H - 1) / 2, (W - 1) / 2)``).
    confidence : ndarray, shape (T,), float64
        In ``[0, 1]``: normalised cross-correlation of the band-limited signals of the frame
        and its anchor at the estimated pose (1 for the reference); 0 when they overlap by
        less than ``min_overlap``.
    angles : ndarray, shape (T,), float64
        Rotation per frame (radians, from the y axis towards the x axis); zeros unless
        registered with ``rotation=True``.
    reference : int
        The reference frame.
    overlap : ndarray, shape (T,), float64
        Share of the FOV the frame has in common with its anchor.
    anchors : ndarray, shape (T,), int64
        The frame each one was registered against (``reference`` for the reference).
    min_confidence : float
        Threshold of :attr:`good`.
    shape : tuple of int
        ``(H, W)`` of the frames.
    spacing : float
        Core spacing (px) the registration signal was band-limited for.
    """

    shifts: np.ndarray
    confidence: np.ndarray
    angles: np.ndarray
    reference: int
    overlap: np.ndarray
    anchors: np.ndarray
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    shape: tuple[int, int] = (0, 0)
    spacing: float = 0.0
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def good(self) -> np.ndarray:
        """(T,) bool: frames registered with ``confidence >= min_confidence``."""
        return self.confidence >= self.min_confidence

    @property
    def n_frames(self) -> int:
        """Number of frames ``T``."""
        return int(len(self.shifts))

    def relative_to(self, reference: int) -> Registration:
        """The same registration expressed relative to another frame.

        Confidences, overlaps and anchors are kept; the new reference must be a good frame.
        """
        r = check_index(reference, self.n_frames)
        if not self.good[r]:
            raise ValueError(
                f"frame {r} was not registered (confidence {self.confidence[r]:.2f} < "
                f"{self.min_confidence}); it cannot be the reference"
            )
        shifts, angles = relative_poses(self.shifts, self.angles, r)
        return Registration(
            shifts=shifts,
            confidence=self.confidence.copy(),
            angles=angles,
            reference=r,
            overlap=self.overlap.copy(),
            anchors=self.anchors.copy(),
            min_confidence=self.min_confidence,
            shape=self.shape,
            spacing=self.spacing,
        )

    def save_csv(self, path: Any) -> None:
        """Write :meth:`table` as CSV (atomic replace), one row per frame."""
        import csv

        from .._atomic import atomic_path

        rows = self.table()
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()}
                )

    @classmethod
    def from_csv(cls, path: Any, *, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> Registration:
        """Read shifts from a CSV file: ours (:meth:`save_csv`) or any with ``dy, dx`` columns.

        Optional columns: ``frame`` (rows in any order, every frame once), ``angle_deg``,
        ``confidence`` (default 1), ``overlap``, ``anchor``. Numbers are parsed as floats,
        never evaluated. The reference is the frame with zero shift (the first such).

        Raises
        ------
        ValueError
            A file that cannot be read, without ``dy``/``dx`` columns, or with bad numbers.
        """
        import csv
        from pathlib import Path

        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                rows = [r for r in csv.DictReader(fh)]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"cannot read shifts from {str(path)!r}: {exc}") from exc
        if not rows or not {"dy", "dx"} <= set(rows[0]):
            raise ValueError(
                f"{str(path)!r}: expected a CSV with columns dy, dx (and optionally frame, "
                "angle_deg, confidence), as `cycsr register` writes"
            )

        def col(name: str, default: float) -> np.ndarray:
            try:
                return np.array([float(r.get(name) or default) for r in rows])
            except ValueError as exc:
                raise ValueError(f"{str(path)!r}: bad number in column {name!r} ({exc})") from exc

        order = np.argsort(col("frame", 0.0), kind="stable") if "frame" in rows[0] else None
        frames = col("frame", 0.0) if order is not None else np.arange(len(rows))
        if order is not None and not np.array_equal(np.sort(frames), np.arange(len(rows))):
            raise ValueError(f"{str(path)!r}: column frame must list 0..{len(rows) - 1} once each")
        idx = order if order is not None else np.arange(len(rows))
        shifts = np.stack([col("dy", 0.0), col("dx", 0.0)], axis=1)[idx]
        if not np.isfinite(shifts).all():
            raise ValueError(f"{str(path)!r}: shifts must be finite numbers")
        zero = np.flatnonzero((shifts == 0).all(axis=1))
        return cls(
            shifts=shifts,
            confidence=np.clip(col("confidence", 1.0)[idx], 0.0, 1.0),
            angles=np.radians(col("angle_deg", 0.0)[idx]),
            reference=int(zero[0]) if zero.size else 0,
            overlap=col("overlap", 1.0)[idx],
            anchors=col("anchor", 0.0)[idx].astype(np.int64),
            min_confidence=float(min_confidence),
            shape=(0, 0),
            spacing=0.0,
        )

    def table(self) -> list[dict[str, Any]]:
        """One row per frame (``frame, dy, dx, angle_deg, confidence, overlap, anchor,
        good``), for CSV files and display."""
        return [
            {
                "frame": t,
                "dy": float(self.shifts[t, 0]),
                "dx": float(self.shifts[t, 1]),
                "angle_deg": float(np.degrees(self.angles[t])),
                "confidence": float(self.confidence[t]),
                "overlap": float(self.overlap[t]),
                "anchor": int(self.anchors[t]),
                "good": bool(self.good[t]),
            }
            for t in range(self.n_frames)
        ]


# ---------------------------------------------------------------------- signal


def _looks_raw(frame: np.ndarray, bundle: FibreBundle) -> bool:
    """True when a frame on the bundle's grid is a raw camera frame rather than a TLI image.

    On a raw frame the cladding between two neighbouring cores is dark: the value halfway
    between them is well below the mean of their values. On a TLI (or any smooth
    interpolation) it is about equal. Decided by the median ratio over Delaunay edges.
    """
    from scipy.spatial import Delaunay

    c = bundle.centres
    if bundle.spacing < 2.5:  # cores a pixel or two apart cannot show dark cladding
        return False
    rng = np.random.default_rng(0)
    tri = Delaunay(c if len(c) <= 4000 else c[rng.choice(len(c), 4000, replace=False)])
    pts = tri.points
    edges = np.concatenate([tri.simplices[:, [0, 1]], tri.simplices[:, [1, 2]]])
    a, b = pts[edges[:, 0]], pts[edges[:, 1]]
    length = np.hypot(*(a - b).T)
    ok = length < 1.6 * bundle.spacing
    a, b = a[ok], b[ok]
    img = frame.astype(np.float64)
    va = ndimage.map_coordinates(img, a.T, order=1, mode="nearest")
    vb = ndimage.map_coordinates(img, b.T, order=1, mode="nearest")
    vm = ndimage.map_coordinates(img, ((a + b) / 2).T, order=1, mode="nearest")
    ends = 0.5 * (va + vb)
    bright = ends > np.percentile(ends, 25)
    if bright.sum() < 10:
        return False
    ratio = np.median(vm[bright] / np.maximum(ends[bright], 1e-12))
    return bool(ratio < 0.8)


def frame_values(
    frames: Any,
    bundle: FibreBundle,
    *,
    kind: str = "auto",
    background: Any = None,
) -> np.ndarray:
    """Fibre values of every frame: core values of raw frames, inverse TLI of reconstructed.

    Parameters
    ----------
    frames : array_like, shape (T, H, W), or (T, N) values
        Frames on the bundle's grid (numpy or dask), or the values themselves (returned as
        float32).
    bundle : FibreBundle
        The fibres.
    kind : {"auto", "raw", "reconstructed"}
        What the frames are: ``"raw"`` camera frames (values = mean over a disc around each
        core, :meth:`FibreBundle.core_values`, divided by the ``background``'s when given),
        or ``"reconstructed"`` TLI images (values = :meth:`FibreBundle.sample`, exact for a
        TLI image). ``"auto"`` looks at the first frame: dark cladding halfway between
        neighbouring cores means raw.
    background : array_like, shape (H, W), optional
        Flat-field frame for raw frames.

    Returns
    -------
    ndarray, shape (T, N), float32
    """
    bundle = check_bundle(bundle)
    if np.ndim(frames) == 2 and np.shape(frames)[-1] == bundle.n_fibres:
        vals = np.asarray(frames, dtype=np.float32)
        if not np.isfinite(vals).all():
            raise ValueError("values contain NaN or inf")
        return vals
    frames = check_frames(frames)
    check_bundle(bundle, frames.shape[1:])
    kind = _resolve_kind(frames, bundle, kind)
    out = np.empty((frames.shape[0], bundle.n_fibres), np.float32)
    for t, frame in iter_frames(frames):
        if kind == "raw":
            out[t] = bundle.core_values(frame, background=background)
        else:
            out[t] = bundle.sample(frame)
    return out


def _resolve_kind(frames: Any, bundle: FibreBundle, kind: str) -> str:
    if kind not in ("auto", "raw", "reconstructed"):
        raise ValueError(f"kind must be 'auto', 'raw' or 'reconstructed', got {kind!r}")
    if kind != "auto":
        return kind
    _, first = next(iter_frames(frames, [0]))
    return "raw" if _looks_raw(first, bundle) else "reconstructed"


def _taper(mask: np.ndarray, width: float) -> np.ndarray:
    """Raised-cosine window: 0 outside ``mask``, rising to 1 over ``width`` px inside."""
    dist = ndimage.distance_transform_edt(mask)
    ramp = np.clip(dist / max(width, 1e-9), 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * ramp)).astype(np.float32)


class _SignalMaker:
    """Turns frames into the band-limited coarse signals of the registration."""

    def __init__(
        self,
        shape: tuple[int, int],
        mask: np.ndarray,
        spacing: float,
        band: float,
        bundle: FibreBundle | None,
        kind: str,
        background: Any,
    ) -> None:
        self.shape = shape
        self.spacing = float(spacing)
        self.bundle = bundle
        self.kind = kind
        self.background = background
        f0 = band / self.spacing  # cycles per px
        self.f0 = f0
        fc = CUT * f0
        h, w = shape
        # the coarse grid just holds the band: Nyquist 0.5 / d >= fc on each axis
        need_y = min(h, int(np.ceil(2.0 * fc * h)) + 2)
        need_x = min(w, int(np.ceil(2.0 * fc * w)) + 2)
        self.ny = min(h, sfft.next_fast_len(need_y, real=False))
        self.nx = min(w, sfft.next_fast_len(need_x, real=False))
        self.d = np.array([h / self.ny, w / self.nx])  # full-res px per coarse px (y, x)
        dmax = float(self.d.max())
        # full-resolution FOV taper: the FOV edge becomes smooth before the band limit
        edge = max(2.0 * self.spacing, 3.0 * dmax)
        self.w0 = _taper(mask, edge)
        self.w0_sum = float(self.w0.sum())
        if self.w0_sum <= 0:
            raise ValueError("the field of view is empty: nothing to register")
        # moments of the full-resolution window, for the plane fit of every frame
        self.fy_c = (np.arange(h) - h / 2.0) / h
        self.fx_c = (np.arange(w) - w / 2.0) / w
        ry = self.w0.sum(axis=1, dtype=np.float64)
        cx = self.w0.sum(axis=0, dtype=np.float64)
        wxy = float(self.fy_c @ (self.w0.astype(np.float64) @ self.fx_c))
        moments = np.array(
            [
                [ry.sum(), ry @ self.fy_c, cx @ self.fx_c],
                [ry @ self.fy_c, ry @ self.fy_c**2, wxy],
                [cx @ self.fx_c, wxy, cx @ self.fx_c**2],
            ]
        )
        self.plane_solve = np.linalg.pinv(moments)
        # Gaussian band weights on the coarse spectrum, in cycles per full-res px
        fy = sfft.fftfreq(self.ny, d=self.d[0])[:, None]
        fx = sfft.rfftfreq(self.nx, d=self.d[1])[None, :]
        self.fy, self.fx = fy, fx
        f2 = fy**2 + fx**2
        # Gaussian, lowered to reach zero smoothly at fc (a hard cut rings far inwards)
        floor = np.exp(-(fc**2) / (2.0 * f0**2))
        weight = np.clip((np.exp(-f2 / (2.0 * f0**2)) - floor) / (1.0 - floor), 0.0, None)
        weight[self.ny // 2, :] = 0.0  # Nyquist row/column: ambiguous, dropped
        if self.nx % 2 == 0:
            weight[:, -1] = 0.0
        self.weight = weight.astype(np.float32)
        # coarse-grid window: inside the region the full-res taper leaves untouched
        yy = (np.arange(self.ny) * self.d[0]).round().astype(int).clip(0, h - 1)
        xx = (np.arange(self.nx) * self.d[1]).round().astype(int).clip(0, w - 1)
        small_mask = mask[np.ix_(yy, xx)]
        inner = ndimage.distance_transform_edt(small_mask, sampling=tuple(self.d))  # full-res px
        margin = edge + 3.0 / (2 * np.pi * f0)  # taper plus the reach of the band limit
        core = np.clip(inner - margin, 0, None)
        taper_w = max(3.0 * dmax, 0.08 * float(core.max()))
        ramp = np.clip(core / taper_w, 0.0, 1.0)
        self.w1 = (0.5 - 0.5 * np.cos(np.pi * ramp)).astype(np.float32)
        self.w1_energy = float((self.w1**2).sum())
        if self.w1_energy <= 0:
            raise ValueError(
                f"the field of view is too small to register frames with cores "
                f"{self.spacing:.3g} px apart"
            )

    def signal(self, frame: np.ndarray) -> np.ndarray:
        """Coarse band-limited signal ``(ny, nx)`` float64 of one frame."""
        if self.bundle is not None and self.kind == "raw":
            vals = self.bundle.core_values(frame, background=self.background)
            frame = self.bundle.reconstruct(vals)
        g = frame.astype(np.float32, copy=False)
        weighted = g * self.w0
        rows = weighted.sum(axis=1, dtype=np.float64)
        cols = weighted.sum(axis=0, dtype=np.float64)
        b = np.array([rows.sum(), rows @ self.fy_c, cols @ self.fx_c])
        a0, a1, a2 = self.plane_solve @ b  # the brightness plane (see _centred)
        plane = (
            np.float32(a0)
            + np.float32(a1) * self.fy_c.astype(np.float32)[:, None]
            + np.float32(a2) * self.fx_c.astype(np.float32)[None, :]
        )
        g0 = weighted - plane * self.w0
        spec = sfft.rfft2(g0, workers=1)
        small = np.empty((self.ny, self.nx // 2 + 1), np.complex64)
        half = self.ny // 2
        small[:half] = spec[:half, : self.nx // 2 + 1]
        small[half:] = spec[spec.shape[0] - (self.ny - half) :, : self.nx // 2 + 1]
        small *= self.weight
        return sfft.irfft2(small, s=(self.ny, self.nx), workers=1).astype(np.float32)


# ---------------------------------------------------------------------- pair registration


def _shift_window(w: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``w(q - shift)`` by bilinear interpolation, zero outside (coarse grid)."""
    h, wd = w.shape
    sy, sx = float(shift[0]), float(shift[1])
    ny, nx = int(np.floor(sy)), int(np.floor(sx))
    fy, fx = sy - ny, sx - nx
    # out[i] = (1 - fy) w[i - ny] + fy w[i - ny - 1] (same along x)
    pad = np.zeros((h + 2, wd + 2), w.dtype)
    pad[1:-1, 1:-1] = w
    out = np.zeros_like(w)
    y0, y1 = max(0, ny), min(h, h + ny + 1)
    x0, x1 = max(0, nx), min(wd, wd + nx + 1)
    if y0 >= y1 or x0 >= x1:
        return out

    def part(dy: int, dx: int) -> np.ndarray:
        return pad[y0 - ny - dy + 1 : y1 - ny - dy + 1, x0 - nx - dx + 1 : x1 - nx - dx + 1]

    out[y0:y1, x0:x1] = (1 - fy) * ((1 - fx) * part(0, 0) + fx * part(0, 1)) + fy * (
        (1 - fx) * part(1, 0) + fx * part(1, 1)
    )
    return out


@dataclass
class _PairResult:
    shift: np.ndarray  # (2,) px, full-res units
    angle: float
    confidence: float
    overlap: float


class _PairRegistrar:
    """Registers coarse signals against one anchor signal (see the module docstring)."""

    def __init__(
        self,
        maker: _SignalMaker,
        *,
        iterations: int = 10,
        tol: float = 5e-3,
        rotation: bool = False,
    ):
        self.m = maker
        self.iterations = iterations
        self.tol = tol
        self.rotation = rotation
        ny, nx = maker.ny, maker.nx
        # weights of the half spectrum in sums over the full spectrum
        cw = np.full(nx // 2 + 1, 2.0)
        cw[0] = 1.0
        if nx % 2 == 0:
            cw[-1] = 1.0
        self.colw = cw[None, :]
        self.fy = maker.fy
        self.fx = maker.fx
        band = maker.weight > 0
        band[0, 0] = False
        self.band = band
        self.b_fy = np.broadcast_to(maker.fy, band.shape)[band]
        self.b_fx = np.broadcast_to(maker.fx, band.shape)[band]
        self.b_cw = np.broadcast_to(self.colw, band.shape)[band].astype(np.float32)
        self.b_fy = self.b_fy.astype(np.float32)
        self.b_fx = self.b_fx.astype(np.float32)
        self.w_zero = maker.w1 * maker.w1
        self.upper = band & (maker.fy**2 + maker.fx**2 >= maker.f0**2)
        # coarse coordinates, centred and scaled (a well-conditioned plane fit)
        self.cy = ((np.arange(ny) - ny / 2) / max(ny, 1)).astype(np.float32)
        self.cx = ((np.arange(nx) - nx / 2) / max(nx, 1)).astype(np.float32)
        self.centre = np.array([(maker.shape[0] - 1) / 2.0, (maker.shape[1] - 1) / 2.0])
        yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
        self.grid = np.stack([yy * maker.d[0], xx * maker.d[1]])  # full-res coordinates

    # -- pieces
    def _windows(self, shift_px: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Common window on the anchor grid and on the frame grid, and the overlap."""
        w1 = self.m.w1
        moved = _shift_window(w1, -shift_px / self.m.d)  # w1(q + s)
        common = w1 * moved  # anchor grid: q
        on_frame = _shift_window(common, shift_px / self.m.d)  # frame grid: p = q + s
        overlap = float(common.sum() / max(self.m.w1_energy, 1e-12))
        return common, on_frame, overlap

    def _centred(self, signal: np.ndarray, window: np.ndarray) -> np.ndarray:
        """``window * (signal - plane)``, the plane fitted to the signal by weighted least
        squares: a brightness gradient looks the same at every shift, so it carries no
        information, and under a fixed window it would pull the shift towards zero."""
        ry = window.sum(axis=1)
        cx = window.sum(axis=0)
        ys, xs = self.cy, self.cx
        wxy = float(ys @ (window @ xs))
        m = np.array(
            [
                [ry.sum(), ry @ ys, cx @ xs],
                [ry @ ys, ry @ (ys * ys), wxy],
                [cx @ xs, wxy, cx @ (xs * xs)],
            ],
            np.float64,
        )
        weighted = signal * window
        rows = weighted.sum(axis=1)
        cols = weighted.sum(axis=0)
        b = np.array([rows.sum(), rows @ ys, cols @ xs], np.float64)
        try:
            a0, a1, a2 = np.linalg.solve(m, b)
        except np.linalg.LinAlgError:
            a0, a1, a2 = (b[0] / m[0, 0] if m[0, 0] > 0 else 0.0), 0.0, 0.0
        plane = np.float32(a0) + np.float32(a1) * ys[:, None] + np.float32(a2) * xs[None, :]
        weighted -= plane * window
        return weighted

    def _spectra(self, anchor: np.ndarray, frame: np.ndarray, shift_px: np.ndarray):
        common, on_frame, overlap = self._windows(shift_px)
        ha = sfft.rfft2(self._centred(anchor, common), workers=1)
        ht = sfft.rfft2(self._centred(frame, on_frame), workers=1)
        return ha, ht, overlap

    def _phase_correlation(self, anchor: np.ndarray, frame: np.ndarray) -> np.ndarray:
        ha = sfft.rfft2(self._centred(anchor, self.w_zero), workers=1)
        ht = sfft.rfft2(self._centred(frame, self.w_zero), workers=1)
        cross = ht * np.conj(ha)
        mag = np.abs(cross)
        cross = cross / (mag + 1e-3 * mag.max() + 1e-30) * self.band
        surface = sfft.irfft2(cross, s=(self.m.ny, self.m.nx), workers=1)
        iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
        peak = np.array([iy, ix], np.float64)
        for axis, (i, n) in enumerate(((iy, self.m.ny), (ix, self.m.nx))):
            idx = [iy, ix]
            idx[axis] = (i - 1) % n
            a = surface[tuple(idx)]
            idx[axis] = (i + 1) % n
            c = surface[tuple(idx)]
            b = surface[iy, ix]
            denom = a - 2 * b + c
            if denom < 0:
                peak[axis] += float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))
        dims = np.array([self.m.ny, self.m.nx], np.float64)
        peak = (peak + dims / 2) % dims - dims / 2  # wrap to [-n/2, n/2)
        return peak * self.m.d

    def _ramp(self, shift_px: np.ndarray) -> np.ndarray:
        """``exp(2 pi i f . shift)`` on the half spectrum (separable: an outer product)."""
        ry = np.exp(2j * np.pi * self.fy[:, 0] * shift_px[0]).astype(np.complex64)
        rx = np.exp(2j * np.pi * self.fx[0] * shift_px[1]).astype(np.complex64)
        return ry[:, None] * rx[None, :]

    def _phase_slope(
        self, ha, ht, shift_px: np.ndarray, *, with_ncc: bool = True
    ) -> tuple[np.ndarray, float]:
        """Correction of ``shift_px`` from the residual phase; and the NCC after it."""
        cross = ht * np.conj(ha)
        aligned = (cross * self._ramp(shift_px))[self.band]
        weight = np.abs(aligned) * self.b_cw
        phi = np.angle(aligned)
        fy, fx = self.b_fy, self.b_fx
        wy, wx = weight * fy, weight * fx
        a11, a12, a22 = wy @ fy, wy @ fx, wx @ fx
        b1, b2 = wy @ phi, wx @ phi
        det = a11 * a22 - a12 * a12
        if det <= 1e-30:
            delta = np.zeros(2)
        else:
            delta = -np.array([a22 * b1 - a12 * b2, a11 * b2 - a12 * b1]) / det / (2 * np.pi)
        delta = np.clip(delta, -2.0 * self.m.d, 2.0 * self.m.d)  # per axis
        if not with_ncc:
            return delta, 0.0
        # NCC at the corrected shift (the whole spectrum, DC excluded)
        cross[0, 0] = 0.0
        num = float(((cross * self._ramp(shift_px + delta)).real * self.colw).sum())
        pa = (ha.real**2 + ha.imag**2) * self.colw
        pt = (ht.real**2 + ht.imag**2) * self.colw
        ea = float(pa.sum() - pa[0, 0])
        et = float(pt.sum() - pt[0, 0])
        if ea <= 0 or et <= 0:
            return delta, 0.0
        ncc = num / np.sqrt(ea * et)
        # sharpness: the share of the upper half of the band in the frame's energy, over the
        # anchor's; a defocused frame loses its detail (brightness changes cancel out)
        sharp_a = float(pa[self.upper].sum()) / ea
        sharp_t = float(pt[self.upper].sum()) / et
        ratio = sharp_t / sharp_a if sharp_a > 0 else 1.0
        return delta, float(ncc * min(1.0, ratio))

    def _rotation_refine(
        self, anchor: np.ndarray, frame: np.ndarray, shift_px: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """Gauss-Newton on (angle, dy, dx) over the common window (coarse grid)."""
        d = self.m.d
        coeffs = ndimage.spline_filter(frame, order=3, mode="constant")
        spec = sfft.rfft2(frame, workers=1)
        fy = sfft.fftfreq(self.m.ny)[:, None]
        fx = sfft.rfftfreq(self.m.nx)[None, :]
        gy = ndimage.spline_filter(
            sfft.irfft2(2j * np.pi * fy * spec, s=frame.shape, workers=1),
            order=3,
            mode="constant",
        )
        gx = ndimage.spline_filter(
            sfft.irfft2(2j * np.pi * fx * spec, s=frame.shape, workers=1),
            order=3,
            mode="constant",
        )
        w1 = self.m.w1
        w1c = w1.astype(np.float64)
        q = self.grid.reshape(2, -1)  # full-res coordinates of anchor-grid samples
        qc = q - self.centre[:, None]
        angle, shift = 0.0, shift_px.astype(np.float64).copy()
        ref = anchor.ravel()
        for _ in range(6):
            rot = rotation(angle)
            p = rot @ qc + self.centre[:, None] + shift[:, None]  # full-res frame coords
            pc = p / d[:, None]
            val = ndimage.map_coordinates(coeffs, pc, order=3, mode="constant", prefilter=False)
            dy = ndimage.map_coordinates(gy, pc, order=3, mode="constant", prefilter=False) / d[0]
            dx = ndimage.map_coordinates(gx, pc, order=3, mode="constant", prefilter=False) / d[1]
            wt = w1.ravel() * ndimage.map_coordinates(
                w1c, pc, order=1, mode="constant", prefilter=False
            )
            if wt.sum() <= 0:
                break
            r_mean = (wt * ref).sum() / wt.sum()
            v_mean = (wt * val).sum() / wt.sum()
            res = (val - v_mean) - (ref - r_mean)
            drot = np.array([[-np.sin(angle), np.cos(angle)], [-np.cos(angle), -np.sin(angle)]])
            dp_da = drot @ qc
            jac = np.stack([dy * dp_da[0] + dx * dp_da[1], dy, dx], axis=1)
            jac -= (wt[:, None] * jac).sum(axis=0) / wt.sum()
            jw = jac * wt[:, None]
            hess = jw.T @ jac + 1e-9 * np.eye(3)
            step = -np.linalg.solve(hess, jw.T @ res)
            angle += float(step[0])
            shift += step[1:]
            if abs(step[0]) < 1e-6 and np.abs(step[1:]).max() < 1e-3:
                break
        return shift, angle

    # -- the whole pair
    def register(self, anchor: np.ndarray, frame: np.ndarray, min_overlap: float) -> _PairResult:
        if not np.any(frame) or not np.any(anchor):
            return _PairResult(np.zeros(2), 0.0, 0.0, 0.0)
        shift = self._phase_correlation(anchor, frame)
        ncc = 0.0
        overlap = 0.0
        previous = None
        for _ in range(self.iterations):
            ha, ht, overlap = self._spectra(anchor, frame, shift)
            if overlap < 0.05:
                break
            delta, ncc = self._phase_slope(ha, ht, shift)
            step = delta
            if previous is not None:
                # the corrections shrink geometrically: Aitken's extrapolation of the rest
                ratio = float(delta @ previous) / max(float(previous @ previous), 1e-30)
                if 0.2 < ratio < 0.9:
                    step = delta / (1.0 - ratio)
            shift = shift + step
            previous = delta
            if np.abs(delta).max() < self.tol:
                break
        angle = 0.0
        if self.rotation and overlap >= 0.05:
            shift, angle = self._rotation_refine(anchor, frame, shift)
            ncc = self._rotated_ncc(anchor, frame, shift, angle)
        confidence = max(0.0, min(1.0, ncc)) if overlap >= min_overlap else 0.0
        return _PairResult(shift, angle, confidence, overlap)

    def _rotated_ncc(self, anchor, frame, shift, angle) -> float:
        d = self.m.d
        q = self.grid.reshape(2, -1)
        p = rotation(angle) @ (q - self.centre[:, None]) + self.centre[:, None] + shift[:, None]
        val = ndimage.map_coordinates(frame, p / d[:, None], order=3, mode="constant")
        wt = self.m.w1.ravel() * ndimage.map_coordinates(
            self.m.w1.astype(np.float64), p / d[:, None], order=1, mode="constant"
        )
        if wt.sum() <= 0:
            return 0.0
        a = anchor.ravel() - (wt * anchor.ravel()).sum() / wt.sum()
        b = val - (wt * val).sum() / wt.sum()
        den = np.sqrt((wt * a * a).sum() * (wt * b * b).sum())
        return float((wt * a * b).sum() / den) if den > 0 else 0.0


# ---------------------------------------------------------------------- the video


def estimate_fov(frames: Any, *, max_frames: int = 16) -> np.ndarray:
    """Field of view of a video without a bundle.

    Reconstructed video usually shows the field of view on a constant surround (0 outside
    the fibres' hull): when at least half of the frame border holds one value in every
    frame, the FOV is where some frame differs from it (holes filled, largest component,
    one pixel eroded). Otherwise (raw frames, vignetted video) it is the bright region of
    the mean frame (:func:`napari_cycsr.fibres.bundle_fov`).
    """
    n = int(frames.shape[0])
    idx = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, max_frames))})
    stack = np.stack([f for _, f in iter_frames(frames, idx)])
    border = np.concatenate(
        [stack[:, 0, :], stack[:, -1, :], stack[:, :, 0], stack[:, :, -1]], axis=1
    )
    value = float(np.median(border))
    if (border == value).mean() >= 0.5:
        differs = (stack != value).any(axis=0)
        lab, count = ndimage.label(ndimage.binary_fill_holes(differs))
        if count:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            fov = ndimage.binary_erosion(lab == int(sizes.argmax()), iterations=1)
            if fov.sum() >= 64:
                return fov
    return bundle_fov(stack.mean(axis=0))


def _fov_of(frames: Any, bundle: FibreBundle | None, mask: Any) -> np.ndarray:
    shape = tuple(int(s) for s in frames.shape[1:])
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != shape:
            raise ValueError(f"mask must have the frames' shape {shape}, got {m.shape}")
        return m
    if bundle is not None:
        return np.asarray(bundle.fov_mask)
    return estimate_fov(frames)


def _spacing_of(frames: Any, bundle: FibreBundle | None, spacing: Any, fov: np.ndarray) -> float:
    if spacing is not None:
        s = float(spacing)
        if not np.isfinite(s) or s < 1.0:
            raise ValueError(f"spacing must be a number of pixels >= 1, got {spacing!r}")
        return s
    if bundle is not None:
        # the spacing of the hexagonal lattice of the same core density (what
        # estimate_spacing measures without a bundle): the band is the same either way
        area = float(np.count_nonzero(bundle.fov_mask))
        return float(np.sqrt(2.0 * area / (np.sqrt(3.0) * bundle.n_fibres)))
    try:
        if int(frames.shape[0]) >= 2:
            return estimate_video_spacing(frames, mask=fov)
        return float(estimate_spacing(next(iter_frames(frames, [0]))[1], mask=fov))
    except ValueError as exc:
        raise ValueError(
            f"cannot estimate the core spacing from the frames ({exc}); give spacing= "
            "(pixels between neighbouring cores) or the fibre bundle"
        ) from exc


def iter_register(
    frames: Any,
    bundle: FibreBundle | None = None,
    *,
    reference: int = 0,
    rotation: bool = False,
    kind: str = "auto",
    background: Any = None,
    spacing: float | None = None,
    mask: Any = None,
    band: float = DEFAULT_BAND,
    chain: bool = True,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    keyframe_overlap: float = DEFAULT_KEYFRAME_OVERLAP,
) -> Generator[VideoProgress, None, Registration]:
    """Generator form of :func:`register`: yields progress, *returns* the registration.

    ``reg = yield from iter_register(...)``; stop iterating to stop (nothing is returned).
    """
    frames = check_frames(frames, min_frames=1)
    n, shape = int(frames.shape[0]), tuple(int(s) for s in frames.shape[1:])
    reference = check_index(reference, n)
    if bundle is not None:
        check_bundle(bundle, shape)
    for name, value, lo, hi in (
        ("min_confidence", min_confidence, 0.0, 1.0),
        ("min_overlap", min_overlap, 0.0, 1.0),
        ("keyframe_overlap", keyframe_overlap, 0.0, 1.0),
    ):
        if not (np.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    if not (np.isfinite(band) and 0.05 <= band <= 0.6):
        raise ValueError(f"band must be in [0.05, 0.6] cycles per core spacing, got {band!r}")
    kind = _resolve_kind(frames, bundle, kind) if bundle is not None else "reconstructed"
    fov = _fov_of(frames, bundle, mask)
    s = _spacing_of(frames, bundle, spacing, fov)
    maker = _SignalMaker(shape, fov, s, band, bundle, kind, background)
    pair = _PairRegistrar(maker, rotation=rotation)

    shifts = np.zeros((n, 2))
    angles = np.zeros(n)
    confidence = np.zeros(n)
    overlap = np.zeros(n)
    anchors = np.full(n, reference, dtype=np.int64)
    confidence[reference] = 1.0
    overlap[reference] = 1.0
    yield VideoProgress(0, n, "register")

    signals: dict[int, np.ndarray] = {}

    def signal_of(t: int) -> np.ndarray:
        if t not in signals:
            signals[t] = maker.signal(next(iter_frames(frames, [t]))[1])
        return signals[t]

    done = 1
    for direction in (range(reference + 1, n), range(reference - 1, -1, -1)):
        anchor = reference
        last_good = reference
        for t in direction:
            sig = signal_of(t)
            res = pair.register(signal_of(anchor), sig, min_overlap)
            if (
                chain
                and last_good != anchor
                and (res.overlap < keyframe_overlap or res.confidence < min_confidence)
            ):
                moved = pair.register(signal_of(last_good), sig, min_overlap)
                if moved.confidence >= min_confidence and (
                    moved.confidence >= res.confidence or res.confidence < min_confidence
                ):
                    for old in [k for k in signals if k not in (reference, last_good)]:
                        del signals[old]
                    anchor, res = last_good, moved
            shifts[t], angles[t] = compose(shifts[anchor], angles[anchor], res.shift, res.angle)
            confidence[t] = res.confidence
            overlap[t] = res.overlap
            anchors[t] = anchor
            if res.confidence >= min_confidence:
                if last_good not in (anchor, reference):
                    signals.pop(last_good, None)
                last_good = t
            elif t not in (anchor, reference):
                signals.pop(t, None)
            done += 1
            yield VideoProgress(done, n, "register")
    return Registration(
        shifts=shifts,
        confidence=confidence,
        angles=angles,
        reference=reference,
        overlap=overlap,
        anchors=anchors,
        min_confidence=float(min_confidence),
        shape=shape,  # type: ignore[arg-type]
        spacing=s,
    )


def register(
    frames: Any,
    bundle: FibreBundle | None = None,
    *,
    reference: int = 0,
    rotation: bool = False,
    kind: str = "auto",
    background: Any = None,
    spacing: float | None = None,
    mask: Any = None,
    band: float = DEFAULT_BAND,
    chain: bool = True,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    keyframe_overlap: float = DEFAULT_KEYFRAME_OVERLAP,
    progress: Any = None,
) -> Registration:
    """Register the frames of a pCLE video to a reference frame, sub-pixel, with confidence.

    Parameters
    ----------
    frames : array_like, shape (T, H, W)
        The video: raw camera frames or reconstructed (e.g. TLI) frames; numpy or dask (a
        dask video is read one chunk at a time).
    bundle : FibreBundle, optional
        The fibres on the frames' grid. With raw frames the registration runs on the TLI of
        their core values (no fibre pattern at all); it also gives the FOV and the spacing.
        Without it, the frames are used as they are, the FOV is the bright region of their
        mean and the spacing is estimated from their spectrum (or ``spacing``).
    reference : int, optional
        Frame whose position is ``(0, 0)``. Default 0.
    rotation : bool, optional
        Also estimate a rotation per frame (small angles between a frame and its anchor).
    kind : {"auto", "raw", "reconstructed"}, optional
        With a bundle: what the frames are (see :func:`frame_values`).
    background : array_like, shape (H, W), optional
        Flat-field frame for raw frames.
    spacing : float, optional
        Core spacing in px when there is no bundle (default: from the frames' spectrum).
    mask : array_like of bool, shape (H, W), optional
        Field of view to use instead of the bundle's (or the estimated one).
    band : float, optional
        Gaussian band of the registration signal in cycles per core spacing (default 0.3):
        wider uses more detail and more of the fibre pattern.
    chain : bool, optional
        Move the anchor on to the last good frame when a frame overlaps its anchor by less
        than ``keyframe_overlap`` (default True); False registers every frame to the
        reference.
    min_confidence : float, optional
        :attr:`Registration.good` threshold (default 0.5).
    min_overlap : float, optional
        Smallest shared share of the FOV; less gives confidence 0 (default 0.25).
    keyframe_overlap : float, optional
        Overlap with the anchor under which the chain moves on (default 0.6).
    progress : callable, optional
        Called with each :class:`VideoProgress`.

    Returns
    -------
    Registration
        ``.shifts`` (T, 2) ``(dy, dx)``: the position in frame ``t`` of a scene point at
        ``(y, x)`` in the reference frame is ``(y + dy, x + dx)``; ``.confidence`` (T,);
        ``.good``; ``.angles``; ``.overlap``; ``.anchors``.

    Raises
    ------
    ValueError
        Frames that are not ``(T, H, W)``, of a shape other than the bundle's, with NaN or
        inf; an empty FOV; options out of range.

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle_video
    >>> vid = simulate_pcle_video(data.camera()[:200, :200], 4, seed=0)
    >>> reg = register(vid.lr, vid.bundle)
    >>> bool(np.abs(reg.shifts - vid.shifts).max() < 0.3), bool(reg.good.all())
    (True, True)
    """
    gen = iter_register(
        frames,
        bundle,
        reference=reference,
        rotation=rotation,
        kind=kind,
        background=background,
        spacing=spacing,
        mask=mask,
        band=band,
        chain=chain,
        min_confidence=min_confidence,
        min_overlap=min_overlap,
        keyframe_overlap=keyframe_overlap,
    )
    return drain(gen, progress)
