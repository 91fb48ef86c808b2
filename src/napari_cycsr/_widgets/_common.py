"""Helpers shared by the napari widgets: geometry, fibres from Points layers, the models.

Nothing here holds an algorithm: it turns napari layers into the
:class:`~napari_cycsr.fibres.FibreBundle` objects the core functions take and places results
over their inputs. The models trained in this session live in
:mod:`napari_cycsr.models_store` (``MODELS`` here is its session registry). Layer menus and
grey pixels are in ``_layers``; running core calls in threads is in ``_worker``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Layer, Points

from napari_cycsr._sample_data import BUNDLE_KEY
from napari_cycsr.models_store import SESSION, ModelRegistry

from ._layers import layer_array, layer_choices, require_layer, yx_shape

__all__ = [
    "BUNDLE_KEY",
    "MODELS",
    "ModelRegistry",
    "bundle_from_points",
    "cell_edges",
    "image_data_2d",
    "layer_array",
    "layer_choices",
    "output_spatial",
    "overlay_factor",
    "require_layer",
    "robust_limits",
    "spatial_kwargs",
    "yx_shape",
]



#: The models of this session (:data:`napari_cycsr.models_store.SESSION`).
MODELS = SESSION


def image_data_2d(layer: Image, viewer: Any | None = None, *, stack: bool = False) -> Any:
    """The grey data of an image layer: the displayed frame (H, W) or the stack (..., H, W).

    Kept for scripts written against earlier versions; see :func:`._layers.layer_array`.
    """
    return layer_array(layer, viewer, stack=stack)


def spatial_kwargs(layer: Layer, ndim: int = 2) -> dict[str, Any]:
    """``scale`` and ``translate`` of the last ``ndim`` axes of ``layer`` (to copy them)."""
    return {"scale": tuple(layer.scale[-ndim:]), "translate": tuple(layer.translate[-ndim:])}


def output_spatial(
    layer: Layer, factor: int = 1, ndim: int | None = None, offset: tuple[int, int] = (0, 0)
) -> dict[str, Any]:
    """Scale/translate for a result on a grid ``factor`` times finer than ``layer``'s.

    The finer grid's pixel centres sit where the input's pixel would be divided into
    ``factor`` parts, so both layers overlay exactly in world coordinates. ``offset`` is the
    (y, x) input pixel where the result starts (a crop).
    """
    ndim = layer.ndim if ndim is None else ndim
    scale = np.array(layer.scale[-ndim:], dtype=float)
    translate = np.array(layer.translate[-ndim:], dtype=float)
    translate[-2:] += scale[-2:] * (np.asarray(offset, dtype=float) + 0.5 / factor - 0.5)
    scale[-2:] /= factor
    return {"scale": tuple(scale), "translate": tuple(translate)}


def robust_limits(data: Any, *, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Percentile contrast limits from a subsample of ``data`` (first frame of a stack)."""
    arr = np.asarray(data if data.ndim == 2 else data[(0,) * (data.ndim - 2)], dtype=np.float32)
    step = max(1, int(np.sqrt(arr.size / 250_000)))
    sample = arr[::step, ::step]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [low, high])
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def cell_edges(labels: np.ndarray) -> np.ndarray:
    """One-pixel-wide borders between differently labelled regions, as a uint8 image.

    A pixel is marked when its right or lower neighbour has another label, so neighbouring
    cells share one line (``skimage.segmentation.find_boundaries`` draws two).
    """
    labels = np.asarray(labels)
    edges = np.zeros(labels.shape, dtype=np.uint8)
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edges


def overlay_factor(
    spacing: float, shape: tuple[int, int], *, cell_px: float = 12.0, max_pixels: int = 8_000_000
) -> int:
    """How many times finer than the image the Voronoi overlay is drawn (1 to 4).

    Cells of real bundles are only 3-7 pixels wide, so one-pixel borders drawn on the image's
    own grid would cover a third of each cell. The overlay grid is refined until a cell spans
    about ``cell_px`` pixels, without exceeding ``max_pixels`` in total.
    """
    factor = int(np.clip(round(cell_px / max(float(spacing), 1e-6)), 1, 4))
    while factor > 1 and shape[0] * shape[1] * factor**2 > max_pixels:
        factor -= 1
    return factor


def points_to_pixels(points: Points, image: Layer) -> np.ndarray:
    """(N,2) point coordinates in ``image``'s pixel grid (last two axes, via world)."""
    data = np.asarray(points.data, dtype=float)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"points layer {points.name!r} has no 2-D coordinates")
    yx = data[:, -2:]
    world = yx * np.asarray(points.scale[-2:]) + np.asarray(points.translate[-2:])
    return (world - np.asarray(image.translate[-2:])) / np.asarray(image.scale[-2:])


def bundle_from_points(points: Points, image: Layer, shape: tuple[int, int] | None = None) -> Any:
    """The :class:`FibreBundle` of a Points layer on ``image``'s pixel grid.

    The bundle stored when the layer was made is reused while the points are unchanged, so
    its cached Voronoi labels and interpolation matrix are not rebuilt.
    """
    from napari_cycsr.fibres import FibreBundle

    require_layer(points, "the fibre Points layer", Points)
    if len(points.data) < 3:
        raise ValueError(
            f"points layer {points.name!r} has {len(points.data)} point(s); "
            "a fibre bundle needs at least 3 fibre centres"
        )
    if shape is None:
        shape = yx_shape(image)
    shape = tuple(int(s) for s in shape)
    centres = points_to_pixels(points, image)
    cached = points.metadata.get(BUNDLE_KEY)
    if cached is not None and tuple(cached.shape) != shape:
        raise ValueError(
            f"the fibres {points.name!r} were found on a {cached.shape[0]}x{cached.shape[1]} "
            f"image but {image.name!r} is {shape[0]}x{shape[1]}: choose the fibres of this "
            "image's bundle (or detect them on it)"
        )
    if (
        cached is not None
        and cached.centres.shape == centres.shape
        and np.allclose(cached.centres, centres, atol=1e-6)
    ):
        return cached
    inside = (
        (centres[:, 0] >= -0.5)
        & (centres[:, 1] >= -0.5)
        & (centres[:, 0] <= shape[0] - 0.5)
        & (centres[:, 1] <= shape[1] - 0.5)
    )
    if inside.sum() < 3:
        raise ValueError(
            f"fewer than 3 of the {len(centres)} points of {points.name!r} lie inside the "
            f"{shape[0]}x{shape[1]} image; are the points and the image from the same bundle?"
        )
    outside = len(centres) - int(inside.sum())
    if outside > max(2, 0.02 * len(centres)):
        raise ValueError(
            f"{outside} of the {len(centres)} points of {points.name!r} lie outside the "
            f"{shape[0]}x{shape[1]} image {image.name!r}: the fibres and the image do not "
            "belong together (choose the fibres of this image's bundle)"
        )
    return FibreBundle(centres[inside], shape)
