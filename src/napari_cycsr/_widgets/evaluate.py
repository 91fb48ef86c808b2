"""Evaluate widget: metrics of a super-resolved layer against its input and a reference."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.layers import Image, Points
from qtpy.QtWidgets import QApplication, QTableWidget, QTableWidgetItem

from ._common import (
    bundle_from_points,
    image_data_2d,
    layer_choices,
    require_layer,
)
from ._worker import guarded, run_in_thread

if TYPE_CHECKING:
    import napari

__all__ = ["EvaluateWidget"]


def _format(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(value) else f"{float(value):.4g}"
    return str(value)


class EvaluateWidget(Container):
    """Score the current frame of an SR layer: SSIM, PSNR, GCF, dGCF, cycle consistency.

    Rows: the input and the SR layer. ``ssim``, ``psnr``, ``dgcf_ref`` and ``tot_cs`` need a
    reference (HR) layer; ``cycle_error`` needs the fibre Points layer (the measured fibre
    values are the input sampled at the fibre centres).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the widget reads.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.worker: Any = None
        self.rows: list[dict[str, Any]] = []
        images = layer_choices(viewer, Image)
        self.sr = ComboBox(label="super-resolved", choices=images)
        self.input = ComboBox(label="input (LR)", choices=images)
        self.reference = ComboBox(label="reference (HR)", choices=images, nullable=True, value=None)
        self.fibres = ComboBox(
            label="fibres", choices=layer_choices(viewer, Points), nullable=True, value=None
        )
        self.evaluate_button = PushButton(text="Evaluate current frame")
        self.copy_button = PushButton(text="Copy as CSV", enabled=False)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.sr, self.input, self.reference, self.fibres,
                self.evaluate_button, self.copy_button, self.status,
            ]
        )  # fmt: skip
        self.table = QTableWidget(0, 0)
        self.table.setMinimumHeight(120)
        self.native.layout().addWidget(self.table)
        self.evaluate_button.changed.connect(self.evaluate)
        self.copy_button.changed.connect(self.copy_csv)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.reset_choices)

    @guarded("Evaluate")
    def evaluate(self) -> None:
        """Compute the metrics of the displayed frame in a worker and fill the table."""
        from napari_cycsr.metrics import evaluate

        sr_layer = require_layer(self.sr.value, "the super-resolved layer")
        lr_layer = require_layer(self.input.value, "the input layer")
        if sr_layer is lr_layer:
            raise ValueError("the super-resolved layer and the input must be different layers")
        sr = np.asarray(image_data_2d(sr_layer, self._viewer), dtype=np.float32)
        lr = np.asarray(image_data_2d(lr_layer, self._viewer), dtype=np.float32)
        if sr.shape != lr.shape:
            raise ValueError(
                f"{sr_layer.name!r} is {sr.shape[0]}x{sr.shape[1]} but the input "
                f"{lr_layer.name!r} is {lr.shape[0]}x{lr.shape[1]}: evaluation compares "
                "images on one pixel grid (a model of another scale?)"
            )
        reference = None
        if self.reference.value is not None:
            ref_layer = require_layer(self.reference.value, "the reference layer")
            reference = np.asarray(image_data_2d(ref_layer, self._viewer), dtype=np.float32)
            if reference.shape != sr.shape:
                raise ValueError(
                    f"the reference {ref_layer.name!r} is {reference.shape}, the images are "
                    f"{sr.shape}; choose a reference on the same pixel grid"
                )
        bundle = None
        if self.fibres.value is not None:
            bundle = bundle_from_points(self.fibres.value, lr_layer)
        names = {"input": lr_layer.name, "sr": sr_layer.name}

        def _work() -> list[dict[str, Any]]:
            kwargs: dict[str, Any] = {"reference": reference, "lr": lr}
            if bundle is not None:
                kwargs.update(mask=bundle.fov_mask, bundle=bundle, values=bundle.sample(lr))
            return evaluate({names["input"]: lr, names["sr"]: sr}, **kwargs)

        self.evaluate_button.enabled = False
        self.status.value = "evaluating..."

        def _finish() -> None:
            self.evaluate_button.enabled = True
            self.worker = None

        self.worker = run_in_thread(
            _work, where="Evaluate", on_return=self._show,
            on_error=lambda failure: setattr(self.status, "value", failure.message),
            on_finish=_finish,
        )  # fmt: skip

    def _show(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        columns = list(rows[0]) if rows else []
        self.table.clear()
        self.table.setRowCount(len(rows))
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels(columns)
        for i, row in enumerate(rows):
            for j, column in enumerate(columns):
                self.table.setItem(i, j, QTableWidgetItem(_format(row.get(column))))
        self.table.resizeColumnsToContents()
        self.copy_button.enabled = bool(rows)
        self.status.value = f"{len(rows)} rows"

    def copy_csv(self) -> str:
        """Put the table on the clipboard as CSV (full precision) and return the text."""
        from napari_cycsr.metrics import rows_to_csv

        if not self.rows:
            return ""
        text = rows_to_csv(self.rows)
        QApplication.clipboard().setText(text)
        self.status.value = "copied as CSV"
        return text
