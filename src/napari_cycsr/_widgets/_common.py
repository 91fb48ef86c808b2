"""Helpers shared by the napari widgets: layer choices, geometry, the model registry.

Nothing here holds an algorithm: it turns napari layers into the plain arrays and
:class:`~napari_cycsr.fibres.FibreBundle` objects the core functions take, and keeps the
models trained in this session so that the Super-resolve widget can use the one the Train
widget just produced. Running core calls in threads lives in ``_worker``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from napari.layers import Image, Layer, Points
from psygnal import Signal

from .._validate import as_grey

__all__ = [
    "MODELS",
    "ModelRegistry",
    "bundle_from_points",
    "cell_edges",
    "image_data_2d",
    "layer_choices",
    "output_spatial",
    "overlay_factor",
    "require_layer",
    "robust_limits",
    "spatial_kwargs",
]

#: Metadata key under which a Points layer keeps the FibreBundle it was made from.
BUNDLE_KEY = "cycsr_bundle"


class ModelRegistry:
    """The models made in this napari session, by name (newest last).

    The Train widget registers the model it trains; the Super-resolve widget offers every
    registered model next to loading one from a file.
    """

    changed = Signal()

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}

    def register(self, name: str, model: Any) -> str:
        """Keep ``model`` under ``name`` (replacing an older one) and return the name."""
        if not name:
            raise ValueError("a model needs a non-empty name")
        self._models.pop(name, None)
        self._models[name] = model
        self.changed.emit()
        return name

    def get(self, name: str) -> Any:
        """The model registered as ``name``; KeyError with the known names otherwise."""
        try:
            return self._models[name]
        except KeyError:
            raise KeyError(f"no model named {name!r}; known: {list(self._models)}") from None

    def names(self) -> list[str]:
        """Registered names, newest first."""
        return list(reversed(self._models))

    def clear(self) -> None:
        self._models.clear()
        self.changed.emit()


#: The session-wide registry.
MODELS = ModelRegistry()


def layer_choices(viewer: Any, kind: type[Layer]) -> Callable[[Any], list[tuple[str, Layer]]]:
    """A magicgui ``choices`` callable listing the viewer's layers of one type."""

    def _choices(_widget: Any = None) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, kind)]

    return _choices


def require_layer(layer: Layer | None, what: str, kind: type[Layer] = Image) -> Layer:
    """Return ``layer`` or raise ValueError saying which layer is missing / of wrong kind."""
    if layer is None:
        raise ValueError(f"choose {what} first (no layer selected)")
    if not isinstance(layer, kind):
        raise TypeError(f"{what} must be a {kind.__name__} layer, got {type(layer).__name__}")
    if isinstance(layer, Image) and layer.rgb:
        # the package's one colour rule: equal-channel RGB(A) is grey, true colour refused
        data = layer.data[-1] if layer.multiscale else layer.data
        as_grey(np.asarray(data), name=f"{what} {layer.name!r}")
    return layer


def image_data_2d(layer: Image, viewer: Any | None = None, *, stack: bool = False) -> Any:
    """The data of an image layer as (H,W) (current frame) or the whole (..., H, W) stack.

    Multiscale layers give their finest level. With ``stack=False`` a stack is sliced at the
    viewer's current position.
    """
    data = layer.data[0] if layer.multiscale else layer.data
    if getattr(layer, "rgb", False):
        data = as_grey(np.asarray(data), name=f"layer {layer.name!r}")  # one colour rule
    if data.ndim < 2:
        raise ValueError(f"layer {layer.name!r} has {data.ndim} dimension(s); expected >= 2")
    if stack or data.ndim == 2:
        return data
    index = ()
    if viewer is not None:
        step = viewer.dims.current_step
        offset = len(step) - data.ndim
        index = tuple(
            int(np.clip(step[offset + i] if offset + i >= 0 else 0, 0, data.shape[i] - 1))
            for i in range(data.ndim - 2)
        )
    else:
        index = (0,) * (data.ndim - 2)
    return np.asarray(data[index])


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


def _points_to_pixels(points: Points, image: Layer) -> np.ndarray:
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
        data = image.data[0] if getattr(image, "multiscale", False) else image.data
        shape = tuple(int(s) for s in data.shape[-2:])
    centres = _points_to_pixels(points, image)
    cached = points.metadata.get(BUNDLE_KEY)
    if (
        cached is not None
        and tuple(cached.shape) == tuple(shape)
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
    return FibreBundle(centres[inside], shape)
