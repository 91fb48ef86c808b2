"""The fibre bundle: fibre centres on a pixel grid and the operators between pixels and fibres.

A coherent fibre bundle carries an image as one intensity value per fibre core. A frame is
therefore a vector ``V`` of ``N`` fibre values plus the (fixed) fibre centres. This module
holds :class:`FibreBundle`, which knows the centres and the pixel grid and provides

* ``labels`` / ``fov_mask``: the Voronoi cell (nearest fibre) of every pixel and the field
  of view (FOV) of the bundle,
* ``reconstruct``: values -> image by Delaunay triangulation and barycentric (linear)
  interpolation (TLI), one sparse matrix product per frame or stack,
* ``vectorize``: image -> values as the mean of each Voronoi cell (the forward model used by
  the cycle consistency of Ravi et al.),
* ``sample``: image -> values at the fibre centres (the inverse of ``reconstruct``),
* ``core_values`` / ``detect``: reading real raw camera frames of a bundle,
* CSV input and output of the centres.

Coordinates are ``(y, x)`` pixel coordinates (napari's Points order): pixel ``(i, j)`` has
its centre at ``(i, j)`` and covers ``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.spatial import Delaunay, cKDTree

from ._atomic import atomic_path
from ._validate import as_grey, as_real_array, as_shape
from .detect import bundle_fov, check_background, detect_cores, estimate_spacing

__all__ = ["FibreBundle", "bundle_fov", "centre_spacing", "estimate_spacing"]

ArrayLike = Any

#: frames per sparse mat-mat product in FibreBundle.reconstruct of a stack
_STACK_CHUNK = 4


def _rasterise_triangles(
    vertices: np.ndarray, shape: tuple[int, int], *, chunk: int = 1_000_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Locate the pixel centres inside a set of triangles (vectorised scan of bounding boxes).

    Triangles are grouped by the size of their pixel bounding box, and each group is scanned
    as one ``(triangles, rows, cols)`` array; very large triangles are scanned in bands of
    rows, so that at most about ``chunk`` candidate pixels are held at once.

    Parameters
    ----------
    vertices : ndarray, shape (M, 3, 2)
        ``(y, x)`` vertices of each triangle.
    shape : tuple of int
        ``(H, W)`` grid; pixel ``(i, j)`` is the point ``(i, j)``.
    chunk : int
        Number of candidate pixels processed at once (bounds the memory).

    Returns
    -------
    pix : ndarray, shape (K,), int64
        Sorted flat indices of the pixels inside at least one triangle.
    simplex : ndarray, shape (K,), int64
        A triangle holding each pixel; on a shared edge the weights of the two triangles
        agree, so the choice does not change any interpolated value.
    bary : ndarray, shape (K, 3), float64
        Barycentric weights on the triangle's three vertices (non-negative, sum 1).
    """
    h, w = shape
    a = vertices[:, 0, :]
    e1 = vertices[:, 1, :] - a
    e2 = vertices[:, 2, :] - a
    den = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    y_lo = np.clip(np.ceil(vertices[:, :, 0].min(axis=1) - 1e-9), 0, h).astype(np.int64)
    y_hi = np.clip(np.floor(vertices[:, :, 0].max(axis=1) + 1e-9), -1, h - 1).astype(np.int64)
    x_lo = np.clip(np.ceil(vertices[:, :, 1].min(axis=1) - 1e-9), 0, w).astype(np.int64)
    x_hi = np.clip(np.floor(vertices[:, :, 1].max(axis=1) + 1e-9), -1, w - 1).astype(np.int64)
    n_y = np.maximum(y_hi - y_lo + 1, 0)
    n_x = np.maximum(x_hi - x_lo + 1, 0)
    todo = np.flatnonzero((np.abs(den) > 1e-12) & (n_y > 0) & (n_x > 0))
    key = n_y[todo] * (w + 1) + n_x[todo]
    todo = todo[np.argsort(key, kind="stable")]
    groups = np.split(todo, np.flatnonzero(np.diff(np.sort(key))) + 1) if len(todo) else []

    found_pix, found_tri, found_bary = [], [], []

    def scan(g: np.ndarray, row0: int, n_rows: int, n_cols: int) -> None:
        py = y_lo[g][:, None, None] + row0 + np.arange(n_rows)[None, :, None]
        px = x_lo[g][:, None, None] + np.arange(n_cols)[None, None, :]
        dy = py - a[g, 0][:, None, None]
        dx = px - a[g, 1][:, None, None]
        d = den[g][:, None, None]
        l1 = (dy * e2[g, 1][:, None, None] - e2[g, 0][:, None, None] * dx) / d
        l2 = (e1[g, 0][:, None, None] * dx - dy * e1[g, 1][:, None, None]) / d
        l0 = 1.0 - l1 - l2
        inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
        ti, yi, xi = np.nonzero(inside)
        found_pix.append(py[ti, yi, 0] * w + px[ti, 0, xi])
        found_tri.append(g[ti])
        found_bary.append(np.column_stack([l0[inside], l1[inside], l2[inside]]))

    for group in groups:
        ny, nx = int(n_y[group[0]]), int(n_x[group[0]])
        if ny * nx <= chunk:
            per = chunk // (ny * nx)
            for start in range(0, len(group), per):
                scan(group[start : start + per], 0, ny, nx)
        else:  # a huge triangle: bands of rows
            band = max(1, chunk // nx)
            for t in group:
                for row0 in range(0, ny, band):
                    scan(np.array([t]), row0, min(band, ny - row0), nx)
    if not found_pix:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    pix = np.concatenate(found_pix).astype(np.int64)
    tri = np.concatenate(found_tri).astype(np.int64)
    bary = np.concatenate(found_bary)
    pix, first = np.unique(pix, return_index=True)
    bary = np.clip(bary[first], 0.0, 1.0)
    bary /= bary.sum(axis=1, keepdims=True)
    return pix, tri[first], bary


def _median_nearest(dist: np.ndarray) -> float:
    """The fibre spacing: median distance of each centre to its nearest neighbour, from
    ``cKDTree.query(centres, k=2)`` distances."""
    return float(np.median(dist[:, 1]))


def centre_spacing(centres: Any) -> float:
    """Fibre spacing (px) of ``(N, 2)`` centres, as :attr:`FibreBundle.spacing` measures it,
    without building the bundle (no field of view, no checks beyond the shape).

    Examples
    --------
    >>> centres = [(0, 0), (0, 3), (3, 0), (3, 3), (10, 10)]
    >>> centre_spacing(centres)
    3.0
    """
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 2 or len(c) < 2:
        raise ValueError(f"centres must be an (N, 2) array of at least 2 points, got {c.shape}")
    dist, _ = cKDTree(c).query(c, k=2)
    return _median_nearest(dist)


class FibreBundle:
    """Fibre centres on an image grid, with the operators between pixels and fibres.

    Parameters
    ----------
    centres : array_like, shape (N, 2)
        Fibre core centres as float ``(y, x)`` pixel coordinates (napari Points order).
        Every centre must be finite and inside the image, i.e. in
        ``[-0.5, H - 0.5] x [-0.5, W - 0.5]``; no two centres may coincide; ``N >= 3``
        and the centres must not all lie on one line.
    shape : tuple of int
        ``(H, W)`` of the pixel grid the bundle is imaged on.
    fov_margin : float, optional
        A pixel belongs to the field of view (FOV) when it lies inside the convex hull of the
        centres *and* within ``fov_margin * spacing`` of its nearest centre, or in a hole
        of that region (the FOV is one filled region: no pinholes where cores are missing).
        Default 1.5. TLI (:meth:`reconstruct`), the projection and super-resolution all
        end at this one FOV.

    Attributes
    ----------
    centres : ndarray, shape (N, 2), float64
        Read-only copy of the centres.
    shape : tuple of int
        ``(H, W)``.
    n_fibres : int
        ``N``.
    spacing : float
        Median nearest-neighbour distance between centres, in pixels.
    labels : ndarray, shape (H, W), int32
        Voronoi cell (index of the nearest centre) of every pixel, ``-1`` outside the FOV.
        Built on first access and cached.
    fov_mask : ndarray, shape (H, W), bool
        ``labels >= 0``.

    Notes
    -----
    All operators (label map, TLI matrix, averaging matrix, the factorisation used by
    :meth:`sample`) are built lazily on first use and cached on the instance; the
    instance is immutable, so the caches never go stale.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_cycsr.simulate import hexagonal_lattice
    >>> bundle = FibreBundle(hexagonal_lattice((64, 64), 4.0, seed=1), (64, 64))
    >>> values = np.linspace(0, 1, bundle.n_fibres, dtype=np.float32)
    >>> image = bundle.reconstruct(values)          # (64, 64) float32 TLI image
    >>> bool(np.allclose(bundle.sample(image), values, atol=1e-5))  # exact inverse
    True
    >>> float(bundle.vectorize(np.ones((64, 64))).min())  # cell means of a constant
    1.0
    """

    def __init__(self, centres: ArrayLike, shape: Sequence[int], *, fov_margin: float = 1.5):
        self.shape: tuple[int, int] = as_shape(shape)
        c = as_real_array(centres, "centres").astype(np.float64)  # astype copies
        if c.ndim != 2 or c.shape[1] != 2:
            raise ValueError(f"centres must have shape (N, 2) as (y, x) pairs, got {c.shape}")
        if c.shape[0] < 3:
            raise ValueError(f"a fibre bundle needs at least 3 centres, got {c.shape[0]}")
        if not np.isfinite(c).all():
            raise ValueError("centres must be finite (found NaN or inf)")
        h, w = self.shape
        outside = (c[:, 0] < -0.5) | (c[:, 0] > h - 0.5) | (c[:, 1] < -0.5) | (c[:, 1] > w - 0.5)
        if outside.any():
            first = c[np.flatnonzero(outside)[0]]
            raise ValueError(
                f"{int(outside.sum())} centre(s) lie outside the image of shape {self.shape} "
                f"(allowed y in [-0.5, {h - 0.5}], x in [-0.5, {w - 0.5}]); first: "
                f"(y={first[0]:g}, x={first[1]:g})"
            )
        fov_margin = float(fov_margin)
        if not np.isfinite(fov_margin) or fov_margin <= 0:
            raise ValueError(f"fov_margin must be a positive number, got {fov_margin!r}")
        self._tree = cKDTree(c)
        dist, idx = self._tree.query(c, k=2)
        if (dist[:, 1] <= 1e-9).any():
            i = int(np.flatnonzero(dist[:, 1] <= 1e-9)[0])
            raise ValueError(
                f"duplicate fibre centres: centre {i} at (y={c[i, 0]:g}, x={c[i, 1]:g}) "
                f"coincides with centre {int(idx[i, 1])}"
            )
        centred = c - c.mean(axis=0)
        if np.linalg.svd(centred, compute_uv=False)[-1] <= 1e-9 * max(1.0, np.abs(c).max()):
            raise ValueError("centres are collinear: they do not span a 2-D field of view")
        c.setflags(write=False)
        self.centres: np.ndarray = c
        self.n_fibres: int = int(c.shape[0])
        self.spacing: float = _median_nearest(dist)
        self.fov_margin: float = fov_margin
        self._cache: dict[Any, Any] = {}

    # ------------------------------------------------------------------ basics
    def __repr__(self) -> str:
        return (
            f"FibreBundle(n_fibres={self.n_fibres}, shape={self.shape}, spacing={self.spacing:.3g})"
        )

    def __len__(self) -> int:
        return self.n_fibres

    @property
    def delaunay(self) -> Delaunay:
        """The Delaunay triangulation of the centres (scipy; computed once, cached): the
        triangles of the TLI and the fibres' neighbours (``vertex_neighbor_vertices``)."""
        tri = self._cache.get("delaunay")
        if tri is None:
            try:
                tri = Delaunay(self.centres)
            except Exception as exc:  # scipy.spatial.QhullError on degenerate input
                raise ValueError(f"cannot triangulate the fibre centres: {exc}") from exc
            self._cache["delaunay"] = tri
        return tri

    def _located_pixels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixels inside the hull, their Delaunay triangle and barycentric weights (cached).

        Returns ``(pix, simplex, bary)``: flat pixel indices (sorted), the triangle holding
        each, and its (K, 3) barycentric weights on the triangle's vertices.
        """
        located = self._cache.get("located")
        if located is None:
            tri = self.delaunay
            located = _rasterise_triangles(self.centres[tri.simplices], self.shape)
            self._cache["located"] = located
        return located

    def _hull_mask(self) -> np.ndarray:
        """(H*W,) bool: pixel centres inside the convex hull of the centres (cached).

        Computed row by row from the hull's half-planes (no triangulation needed), with the
        same 1e-9 tolerance as the triangle scan of the TLI operator.
        """
        mask = self._cache.get("hull_mask")
        if mask is None:
            from scipy.spatial import ConvexHull

            h, w = self.shape
            eq = ConvexHull(self.centres).equations  # inside: n_y*y + n_x*x + d <= 0
            scale = max(1.0, float(np.abs(self.centres).max()))
            tol = 1e-9 * scale
            rows = np.arange(h, dtype=np.float64)[:, None]
            ny, nx, d = eq[:, 0][None, :], eq[:, 1][None, :], eq[:, 2][None, :]
            rest = -(ny * rows + d) + tol  # constraint: nx * x <= rest
            with np.errstate(divide="ignore", invalid="ignore"):
                bound = rest / nx
            pos, neg = nx > 1e-12, nx < -1e-12
            hi = np.where(pos, bound, np.inf).min(axis=1)
            lo = np.where(neg, bound, -np.inf).max(axis=1)
            flat_ok = np.where(~pos & ~neg, rest >= 0, True).all(axis=1)
            x_lo = np.clip(np.ceil(lo - 1e-9), 0, w)
            x_hi = np.clip(np.floor(hi + 1e-9), -1, w - 1)
            cols = np.arange(w)[None, :]
            mask = ((cols >= x_lo[:, None]) & (cols <= x_hi[:, None]) & flat_ok[:, None]).ravel()
            self._cache["hull_mask"] = mask
        return mask

    @property
    def labels(self) -> np.ndarray:
        """(H, W) int32 Voronoi cell id of each pixel, ``-1`` outside the FOV (read-only)."""
        labels = self._cache.get("labels")
        if labels is None:
            h, w = self.shape
            pix = np.flatnonzero(self._hull_mask())  # only pixels in the hull can be in the FOV
            coords = np.column_stack([pix // w, pix % w]).astype(np.float64)
            dist, idx = self._tree.query(coords, k=1, workers=-1)
            near = np.zeros(h * w, dtype=bool)
            near[pix[dist <= self.fov_margin * self.spacing]] = True
            # one filled region: no pinholes where a few cores are missing (holes lie
            # inside the hull, so every filled pixel has its nearest centre in ``idx``)
            near = ndimage.binary_fill_holes(near.reshape(self.shape)).ravel()
            inside = near[pix]
            flat = np.full(h * w, -1, dtype=np.int32)
            flat[pix[inside]] = idx[inside]
            labels = flat.reshape(self.shape)
            labels.setflags(write=False)
            self._cache["labels"] = labels
        return labels

    @property
    def fov_mask(self) -> np.ndarray:
        """(H, W) bool field-of-view mask, ``labels >= 0`` (read-only)."""
        mask = self._cache.get("fov_mask")
        if mask is None:
            mask = self.labels >= 0
            mask.setflags(write=False)
            self._cache["fov_mask"] = mask
        return mask

    @property
    def cell_sizes(self) -> np.ndarray:
        """(N,) int64 number of FOV pixels in each fibre's Voronoi cell."""
        lab = self.labels.ravel()
        return np.bincount(lab[lab >= 0], minlength=self.n_fibres).astype(np.int64)

    # ------------------------------------------------------------------ operators
    @property
    def tli_matrix(self) -> sp.csr_matrix:
        """Sparse (H*W, N) float32 matrix of the Delaunay barycentric (TLI) weights.

        Row ``p`` holds the barycentric weights of pixel ``p`` (row-major flattening) on the
        three vertices of the triangle that contains it; rows of pixels outside the field
        of view (:attr:`fov_mask`) are empty.
        """
        mat = self._cache.get("tli")
        if mat is None:
            mat = self._build_tli()
            self._cache["tli"] = mat
        return mat

    def _build_tli(self) -> sp.csr_matrix:
        pix, simplex, bary = self._located_pixels()
        # the one field of view: TLI, projection and super-resolution all end at fov_mask
        keep = self.fov_mask.ravel()[pix]
        pix, simplex, bary = pix[keep], simplex[keep], bary[keep]
        cols = self.delaunay.simplices[simplex]  # (K, 3) fibre indices
        n_pix = self.shape[0] * self.shape[1]
        indptr = np.zeros(n_pix + 1, dtype=np.int64)
        indptr[pix + 1] = 3
        np.cumsum(indptr, out=indptr)
        return sp.csr_matrix(
            (bary.astype(np.float32).ravel(), cols.ravel(), indptr),
            shape=(n_pix, self.n_fibres),
        )

    def _check_values(self, values: ArrayLike) -> np.ndarray:
        v = as_real_array(values, "values")
        if v.ndim < 1 or v.shape[-1] != self.n_fibres:
            raise ValueError(
                f"values must have shape (N,) or (..., N) with N = {self.n_fibres} fibres, "
                f"got shape {v.shape}"
            )
        return v

    def _check_image(self, image: ArrayLike, name: str = "image") -> np.ndarray:
        img = as_grey(as_real_array(image, name), name=name)
        if img.ndim < 2 or img.shape[-2:] != self.shape:
            hint = ""
            if img.ndim >= 3 and img.shape[-1] in (3, 4) and img.shape[-3:-1] == self.shape:
                hint = " (RGB/RGBA images are not supported: convert to grey first)"
            raise ValueError(
                f"{name} must have shape (H, W) or (..., H, W) with (H, W) = {self.shape}, "
                f"got shape {img.shape}{hint}"
            )
        return img

    def reconstruct(self, values: ArrayLike) -> np.ndarray:
        """Interpolate fibre values onto the pixel grid (triangulated linear interpolation).

        Parameters
        ----------
        values : array_like, shape (N,) or (..., N)
            One value per fibre, or a stack of such vectors.

        Returns
        -------
        ndarray, shape (H, W) or (..., H, W), float32
            The Delaunay barycentric interpolation of ``values``; zero outside the field of
            view (:attr:`fov_mask`, the same FOV the projection and super-resolution use).
            One sparse matrix-vector product per frame (a single sparse
            matrix-matrix product for a stack).

        Raises
        ------
        ValueError
            If the last axis of ``values`` is not ``n_fibres`` long.
        """
        v = self._check_values(values)
        lead = v.shape[:-1]
        flat = np.asarray(v.reshape(-1, self.n_fibres), dtype=np.float32)
        mat = self.tli_matrix
        out = np.empty((flat.shape[0], mat.shape[0]), dtype=np.float32)
        if flat.shape[0] == 1:
            out[0] = mat @ flat[0]
        else:
            # sparse mat-mat products on a few frames at a time: the (pixels, frames) result
            # stays small enough for the transposing copy into C order to be cheap
            for start in range(0, flat.shape[0], _STACK_CHUNK):
                block = flat[start : start + _STACK_CHUNK]
                out[start : start + len(block)] = (mat @ block.T).T
        return out.reshape(*lead, *self.shape)

    @property
    def _averaging_matrix(self) -> sp.csr_matrix:
        """Sparse (N, H*W) matrix whose product with a flat image gives the cell means."""
        mat = self._cache.get("avg")
        if mat is None:
            lab = self.labels.ravel()
            pix = np.flatnonzero(lab >= 0)
            cell = lab[pix].astype(np.int64)
            counts = np.bincount(cell, minlength=self.n_fibres)
            weight = 1.0 / counts[cell]
            mat = sp.csr_matrix(
                (weight, (cell, pix)), shape=(self.n_fibres, self.shape[0] * self.shape[1])
            )
            self._cache["avg"] = mat
            self._cache["empty_cells"] = counts == 0
        return mat

    def vectorize(self, image: ArrayLike) -> np.ndarray:
        """Mean of the image over each fibre's Voronoi cell (Voronoi vectorization).

        Parameters
        ----------
        image : array_like, shape (H, W) or (..., H, W)
            Grey image(s) on the bundle's grid.

        Returns
        -------
        ndarray, shape (N,) or (..., N), float32
            Cell means over FOV pixels (``labels``). A fibre whose Voronoi cell contains no
            FOV pixel (possible when two centres are closer than a pixel) gets ``NaN``.
            NaN pixels propagate to the mean of their cell.
        """
        img = self._check_image(image)
        lead = img.shape[:-2]
        mat = self._averaging_matrix
        flat = img.reshape(-1, self.shape[0] * self.shape[1]).astype(np.float64, copy=False)
        out = (mat @ flat.T).T
        empty = self._cache["empty_cells"]
        if empty.any():
            out[:, empty] = np.nan
        return out.astype(np.float32).reshape(*lead, self.n_fibres)

    def _sample_solver(self) -> tuple[Any, sp.csr_matrix, sp.csr_matrix, float]:
        """Factorisation of the regularised normal equations of the TLI operator."""
        solver = self._cache.get("sample_solver")
        if solver is None:
            from scipy.sparse.linalg import splu

            r = self.tli_matrix.astype(np.float64)
            rt = r.T.tocsr()
            gram = (rt @ r).tocsc()
            diag = gram.diagonal()
            lam = 1e-6 * float(np.median(diag[diag > 0])) if (diag > 0).any() else 1.0
            reg = (gram + lam * sp.identity(self.n_fibres, format="csc")).tocsc()
            solver = (splu(reg, permc_spec="COLAMD"), rt, gram.tocsr(), lam)
            self._cache["sample_solver"] = solver
        return solver

    def sample(self, image: ArrayLike, *, method: str = "tli") -> np.ndarray:
        """Value of the image at each fibre centre.

        Parameters
        ----------
        image : array_like, shape (H, W) or (..., H, W)
            Grey image(s) on the bundle's grid.
        method : {"tli", "bilinear"}, optional
            ``"tli"`` (default): the fibre values whose TLI reconstruction best fits the
            image in least squares over the pixels inside the hull,
            ``argmin_v ||R v - image||^2`` with ``R`` the :attr:`tli_matrix`. It is the
            inverse of :meth:`reconstruct`: ``sample(reconstruct(v)) == v`` up to float32
            rounding (measured: max error 6e-8 for values in [0, 1]). For any other image
            it is the value at each centre of the piecewise-linear (Delaunay) surface that
            best fits the image. A tiny Tikhonov term pulling towards the bilinear value
            (weight ``1e-6`` of the median diagonal of ``R^T R``, its bias removed again by
            one step of iterative refinement) keeps the problem well posed; a fibre whose
            triangles contain no pixel centre (only when fibres are denser than pixels,
            spacing below about 2 px) cannot be recovered and gets its bilinear value.
            ``"bilinear"``: bilinear interpolation of the four pixels around each centre
            (edge pixels are repeated); cheaper but *not* an inverse of
            :meth:`reconstruct`, since the TLI surface is not bilinear between pixels.

        Returns
        -------
        ndarray, shape (N,) or (..., N), float32

        Notes
        -----
        The first ``"tli"`` call factorises the (N, N) sparse normal matrix once
        with SuperLU (a fraction of a second for ~30,000 fibres); later calls are two pairs
        of triangular solves, for all frames of a stack at once.
        """
        img = self._check_image(image)
        if method not in ("tli", "bilinear"):
            raise ValueError(f"method must be 'tli' or 'bilinear', got {method!r}")
        lead = img.shape[:-2]
        flat = img.reshape(-1, *self.shape).astype(np.float64, copy=False)
        v0 = np.stack(
            [ndimage.map_coordinates(f, self.centres.T, order=1, mode="nearest") for f in flat]
        )
        if method == "bilinear":
            return v0.astype(np.float32).reshape(*lead, self.n_fibres)
        lu, rt, gram, lam = self._sample_solver()
        b = rt @ flat.reshape(flat.shape[0], -1).T  # (N, T)
        x = lu.solve(b + lam * v0.T)
        x = x + lu.solve(b - gram @ x)  # one step of refinement removes the regulariser's bias
        return x.T.astype(np.float32).reshape(*lead, self.n_fibres)

    # ------------------------------------------------------------------ raw frames
    def _disc_matrix(self, radius: float) -> tuple[np.ndarray, sp.csr_matrix]:
        """Flat pixel indices the discs touch, and the (N, n_pixels) disc-mean matrix on them."""
        key = ("disc", round(float(radius), 9))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        h, w = self.shape
        r_int = int(np.ceil(radius)) + 1
        dy, dx = np.mgrid[-r_int : r_int + 1, -r_int : r_int + 1]
        base = np.rint(self.centres).astype(np.int64)  # nearest pixel of each centre
        py = base[:, 0:1] + dy.ravel()[None, :]
        px = base[:, 1:2] + dx.ravel()[None, :]
        d2 = (py - self.centres[:, 0:1]) ** 2 + (px - self.centres[:, 1:2]) ** 2
        keep = (d2 <= radius**2) & (py >= 0) & (py < h) & (px >= 0) & (px < w)
        # always keep the nearest in-image pixel so that every fibre has a value
        nearest = (dy.ravel() == 0) & (dx.ravel() == 0)
        by = np.clip(base[:, 0], 0, h - 1)
        bx = np.clip(base[:, 1], 0, w - 1)
        py[:, nearest] = by[:, None]
        px[:, nearest] = bx[:, None]
        keep[:, nearest] = True
        fib, k = np.nonzero(keep)
        pix = py[fib, k] * w + px[fib, k]
        counts = np.bincount(fib, minlength=self.n_fibres)
        # only the pixels some disc touches are ever read: keep the matrix on those columns
        cols, local = np.unique(pix, return_inverse=True)
        mat = sp.csr_matrix((1.0 / counts[fib], (fib, local)), shape=(self.n_fibres, cols.size))
        self._cache[key] = (cols, mat)
        return cols, mat

    def core_values(
        self, raw: ArrayLike, *, background: ArrayLike | None = None, radius: float | None = None
    ) -> np.ndarray:
        """Intensity of each fibre core on raw camera frame(s), optionally flat-fielded.

        Parameters
        ----------
        raw : array_like, shape (H, W) or (T, H, W)
            Raw frame(s) of the bundle, on the grid the centres were found on.
        background : array_like, shape (H, W), optional
            Background (flat-field) frame: an image of a uniform target through the same
            bundle. When given, each fibre's value is divided by its value on the
            background, which removes the core-to-core transmission differences. Fibres with
            a non-positive background value get 0.
        radius : float, optional
            Radius (px) of the disc around each centre whose mean is the core value.
            Default ``max(1, 0.3 * spacing)``. The pixel nearest the centre always counts.

        Returns
        -------
        ndarray, shape (N,) or (T, N), float32
        """
        img = self._check_image(raw, "raw")
        if img.ndim not in (2, 3):
            raise ValueError(f"raw must be (H, W) or (T, H, W), got shape {img.shape}")
        if radius is None:
            radius = max(1.0, 0.3 * self.spacing)
        radius = float(radius)
        if not np.isfinite(radius) or radius <= 0:
            raise ValueError(f"radius must be a positive number of pixels, got {radius!r}")
        cols, mat = self._disc_matrix(radius)
        # gather the disc pixels first: a stack is never converted to float as a whole
        flat = img.reshape(-1, self.shape[0] * self.shape[1])[:, cols].astype(np.float64)
        vals = (mat @ flat.T).T
        if background is not None:
            bg = self._check_image(background, "background")
            if bg.ndim != 2:
                raise ValueError(f"background must be one (H, W) frame, got shape {bg.shape}")
            check_background(bg)
            bgv = mat @ bg.reshape(-1)[cols].astype(np.float64)
            ok = bgv > 0
            vals = np.where(ok, vals / np.where(ok, bgv, 1.0), 0.0)
        out = vals.astype(np.float32)
        return out[0] if img.ndim == 2 else out

    @classmethod
    def detect(
        cls,
        raw: ArrayLike,
        *,
        background: ArrayLike | None = None,
        spacing: float | None = None,
        mask: ArrayLike | None = None,
        fov_margin: float = 1.5,
    ) -> FibreBundle:
        """Find the fibre cores on a raw camera frame of a bundle.

        Parameters
        ----------
        raw : array_like, shape (H, W)
            Raw frame: cores bright, cladding dark.
        background : array_like, shape (H, W), optional
            Background (flat-field) frame of the same bundle. When given, detection runs on
            it instead of ``raw``: it shows every core without the object's structure.
        spacing : float, optional
            Approximate core spacing in pixels; default :func:`estimate_spacing` (the
            spacing of the hexagonal lattice of the same core density).
        mask : array_like of bool, shape (H, W), optional
            Where to look for cores; default :func:`bundle_fov` of the detection frame.
        fov_margin : float, optional
            Passed to the returned bundle.

        Returns
        -------
        FibreBundle
            Bundle of the detected centres on the frame's grid.

        Raises
        ------
        napari_cycsr.detect.NoBundleFound
            (a ``ValueError``) when the frame shows no regular lattice of cores ("no fibre
            bundle found": noise, a reconstructed image, a blank frame).

        Notes
        -----
        See :func:`napari_cycsr.detect.detect_cores` for the algorithm. Without a background
        a warning says when the field of view found is small.
        """
        found = detect_cores(raw, background=background, spacing=spacing, mask=mask)
        return cls(found.centres, found.fov.shape, fov_margin=fov_margin)

    # ------------------------------------------------------------------ I/O
    def save_csv(self, path: str | os.PathLike) -> None:
        """Write the centres to a CSV file with header ``y,x`` (atomic replace).

        Parameters
        ----------
        path : str or PathLike
            Destination file. Written to a temporary file in the same folder first and then
            moved into place, so a reader never sees a half-written file.
        """
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["y", "x"])
            for y, x in self.centres:
                writer.writerow([repr(float(y)), repr(float(x))])

    @classmethod
    def from_csv(
        cls, path: str | os.PathLike, shape: Sequence[int], *, fov_margin: float = 1.5
    ) -> FibreBundle:
        """Read centres from a CSV file.

        Accepted layouts: a header ``y,x`` (our own :meth:`save_csv`); napari's Points layer
        CSV (``index,axis-0,axis-1``; with more axes the last two are used); or two
        headerless numeric columns ``y, x``. Values are parsed as floats, never evaluated.

        Parameters
        ----------
        path : str or PathLike
            CSV file.
        shape : tuple of int
            ``(H, W)`` of the image grid.
        fov_margin : float, optional
            See :class:`FibreBundle`.

        Returns
        -------
        FibreBundle

        Raises
        ------
        ValueError
            If the file cannot be read or parsed as fibre centres.
        """
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"cannot read fibre centres from {str(path)!r}: {exc}") from exc
        if not rows:
            raise ValueError(f"{str(path)!r} holds no fibre centres (empty CSV)")
        header = [c.strip().lower() for c in rows[0]]
        if "y" in header and "x" in header:
            cols = [header.index("y"), header.index("x")]
            body = rows[1:]
        elif any(h.startswith("axis-") for h in header):
            axes = sorted(
                (int(h[5:]), i) for i, h in enumerate(header) if h[5:].isdigit() and "axis-" in h
            )
            if len(axes) < 2:
                raise ValueError(
                    f"{str(path)!r}: a napari Points CSV needs columns axis-0 and axis-1, "
                    f"got header {rows[0]}"
                )
            cols = [axes[-2][1], axes[-1][1]]
            body = rows[1:]
        else:
            cols = [0, 1]
            body = rows
            try:
                float(rows[0][0]), float(rows[0][1])
            except (ValueError, IndexError):
                raise ValueError(
                    f"{str(path)!r}: unrecognised CSV header {rows[0]}; expected 'y,x', "
                    "napari Points columns 'index,axis-0,axis-1', or two numeric columns"
                ) from None
        try:
            centres = np.array([[float(r[cols[0]]), float(r[cols[1]])] for r in body])
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{str(path)!r}: malformed centre row ({exc})") from exc
        if centres.size == 0:
            raise ValueError(f"{str(path)!r} holds no fibre centres")
        return cls(centres, shape, fov_margin=fov_margin)

    def crop(self, y0: int, x0: int, h: int, w: int) -> FibreBundle:
        """Bundle of the centres inside a window, in the window's coordinates.

        Parameters
        ----------
        y0, x0 : int
            Top-left pixel of the window.
        h, w : int
            Window size.

        Returns
        -------
        FibreBundle
            Centres with ``y0 - 0.5 <= y <= y0 + h - 0.5`` (same for x), shifted by
            ``(-y0, -x0)``, on a grid of shape ``(h, w)``. Near the window edge its Voronoi
            cells and triangles can differ from those of the full bundle.
        """
        y0, x0, h, w = int(y0), int(x0), int(h), int(w)
        if h < 1 or w < 1:
            raise ValueError(f"crop size must be positive, got h={h}, w={w}")
        shifted = self.centres - np.array([y0, x0], dtype=np.float64)
        inside = (
            (shifted[:, 0] >= -0.5)
            & (shifted[:, 0] <= h - 0.5)
            & (shifted[:, 1] >= -0.5)
            & (shifted[:, 1] <= w - 0.5)
        )
        return FibreBundle(shifted[inside], (h, w), fov_margin=self.fov_margin)

    def resized(self, shape: Sequence[int]) -> FibreBundle:
        """The same fibres on the grid of the image resized to ``shape``.

        Parameters
        ----------
        shape : tuple of int
            ``(H', W')`` of the resized image (e.g. ``skimage.transform.resize``'s
            ``output_shape``).

        Returns
        -------
        FibreBundle
            Centres mapped as the pixel grid is (pixel centres at ``(i + 0.5) H'/H - 0.5``),
            on a grid of shape ``(H', W')``, same ``fov_margin``; its ``spacing`` is this
            one's times ``H'/H`` (for an aspect-preserving resize).

        Examples
        --------
        >>> from napari_cycsr.simulate import hexagonal_lattice
        >>> bundle = FibreBundle(hexagonal_lattice((64, 64), 4.0, seed=1), (64, 64))
        >>> half = bundle.resized((32, 32))
        >>> half.shape, round(half.spacing / bundle.spacing, 3)
        ((32, 32), 0.5)
        """
        new = as_shape(shape)
        factor = np.array(new, dtype=np.float64) / np.array(self.shape, dtype=np.float64)
        moved = (self.centres + 0.5) * factor - 0.5
        # rounding may push a centre on the border a hair outside the new grid
        moved = np.clip(moved, -0.5, np.array(new, dtype=np.float64) - 0.5)
        return FibreBundle(moved, new, fov_margin=self.fov_margin)
