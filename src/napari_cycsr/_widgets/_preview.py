"""The Train widget's preview layer: one Image layer updated in place while training runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image

from ._common import output_spatial

if TYPE_CHECKING:
    import napari

__all__ = ["PREVIEW_NAME", "PreviewLayer"]

PREVIEW_NAME = "CycSR preview"


class PreviewLayer:
    """Creates, places and updates the ``CycSR preview`` layer of a viewer.

    The layer is added (hidden and empty) when a run starts: creating a layer while the
    training thread holds the CPU blocks the viewer several times longer than at the click.
    The first preview of a run places it over its crop of the first LR layer.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self._placed = False

    def prepare(self, first: Image, *, enabled: bool = True) -> None:
        """Start of a run: make sure the layer exists (unless previews are off)."""
        self._placed = False
        if enabled and PREVIEW_NAME not in self._viewer.layers:
            self._viewer.add_image(
                np.zeros((1, 1), np.float32), name=PREVIEW_NAME, visible=False,
                contrast_limits=tuple(first.contrast_limits), colormap=first.colormap,
            )  # fmt: skip

    def show(self, preview: np.ndarray, first: Image, crop: tuple[int, int, int, int]) -> None:
        """Show ``preview``, the SR of ``crop`` (y0, x0, h, w) of the layer ``first``."""
        if PREVIEW_NAME not in self._viewer.layers:  # the user deleted it: no preview
            return
        layer = self._viewer.layers[PREVIEW_NAME]
        if not self._placed:
            y0, x0, h, _ = crop
            spatial = output_spatial(first, preview.shape[-2] // h, ndim=2, offset=(y0, x0))
            layer.scale, layer.translate = spatial["scale"], spatial["translate"]
            self._placed = True
        layer.data = preview
        layer.visible = True

    def drop_if_empty(self) -> None:
        """End of a run: remove the layer if this run never filled it."""
        if not self._placed and PREVIEW_NAME in self._viewer.layers:
            if self._viewer.layers[PREVIEW_NAME].data.shape == (1, 1):
                self._viewer.layers.remove(PREVIEW_NAME)
