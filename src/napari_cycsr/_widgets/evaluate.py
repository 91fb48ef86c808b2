"""Evaluate widget: metrics of a super-resolved layer and its input, one frame or a stack.

With a reference (HR) layer: SSIM, PSNR, dGCF against it and Tot_cs. Without one (real data):
the reference-free measures, GCF, dGCF against the input, the cycle-consistency error with
the fibres, and a no-reference sharpness. Scores are restricted to the field of view (from the
fibres, or found from the input's flat surround). A plot shows one metric per layer: bars for
one frame, curves against the frame for a stack.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Label, ProgressBar, PushButton
from napari.layers import Image, Points
from qtpy.QtWidgets import QApplication, QTableWidget, QTableWidgetItem

from ._common import bundle_from_points
from ._form import Form
from ._layers import ActiveLayerFollower, layer_array, layer_choices, require_layer
from ._plots import MetricPlot
from ._worker import Runner, Step, guarded

if TYPE_CHECKING:
    import napari

__all__ = ["SCOPES", "EvaluateWidget"]

#: Frames to score: (label, value).
SCOPES = [("the displayed frame", "frame"), ("every frame of the stack", "stack")]
#: Metrics offered for the plot, in menu order.
PLOT_METRICS = (
    "psnr", "ssim", "gcf", "dgcf_ref", "dgcf_lr", "cycle_error", "sharpness", "tot_cs",
)  # fmt: skip


def _format(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(value) else f"{float(value):.4g}"
    return str(value)


def _shape(layer: Image, data: Any) -> str:
    return "x".join(str(int(s)) for s in data.shape)


class EvaluateWidget(Form):
    """Score an SR layer and its input: with or without a reference, one frame or a stack.

    Rows of the table: the input and the SR layer (for a stack, the mean over the frames).
    ``ssim``, ``psnr``, ``dgcf_ref`` and ``tot_cs`` need a reference (HR) layer;
    ``cycle_error`` needs the fibre Points layer (the measured fibre values are the input
    sampled at the fibre centres); ``gcf``, ``dgcf_lr`` and ``sharpness`` need nothing else.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the widget reads.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.rows: list[dict[str, Any]] = []
        self.frame_rows: list[dict[str, Any]] = []
        images = layer_choices(viewer, Image)
        self.sr = ComboBox(
            label="super-resolved", choices=images,
            tooltip="The result to score. Follows the layer you select.",
        )  # fmt: skip
        self.input = ComboBox(
            label="input (LR)", choices=images,
            tooltip="The layer the result was made from (the TLI image); scored too, as the "
            "baseline.",
        )  # fmt: skip
        self.reference = ComboBox(
            label="reference (HR)", choices=images, nullable=True, value=None,
            tooltip="Optional: the true or estimated high-resolution image on the same grid "
            "(enables SSIM, PSNR, dGCF_ref, Tot_cs). Real data usually has none.",
        )  # fmt: skip
        self.fibres = ComboBox(
            label="fibres", choices=layer_choices(viewer, Points), nullable=True, value=None,
            tooltip="Optional: the fibre centres; restricts scores to their field of view and "
            "adds the cycle-consistency error.",
        )  # fmt: skip
        self.scope = ComboBox(
            label="frames", choices=SCOPES, value="frame",
            tooltip="Score the displayed frame, or every frame of a stack (table: the mean; "
            "plot: one value per frame).",
        )  # fmt: skip
        self.metric = ComboBox(
            label="plot", choices=PLOT_METRICS, value="gcf",
            tooltip="The metric drawn in the plot below.",
        )  # fmt: skip
        self.evaluate_button = PushButton(
            text="Evaluate", tooltip="Compute the metrics in the background."
        )
        self.cancel_button = PushButton(text="Cancel", tooltip="Stop between two frames.")
        self.copy_button = PushButton(
            text="Copy as CSV", enabled=False,
            tooltip="Put every score (every frame, full precision) on the clipboard as CSV.",
        )  # fmt: skip
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress", tooltip="Frames done.")
        self.status = Label(value="", tooltip="What was scored, and where.")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.sr, self.input, self.reference, self.fibres, self.scope, self.metric,
                self.evaluate_button, self.cancel_button, self.copy_button, self.progress,
                self.status,
            ]
        )  # fmt: skip
        self.table = QTableWidget(0, 0)
        self.table.setMinimumHeight(110)
        self.table.setToolTip("One row per layer; for a stack the mean over the frames.")
        self.add_qt(self.table)
        self.plot = MetricPlot(viewer.theme)
        self.plot.setToolTip("The chosen metric for each layer (per frame for a stack).")
        self.add_qt(self.plot)
        self.finish()
        self.runner = Runner(
            self, viewer, "Evaluate", progress=self.progress, status=self.status,
            busy_widgets=[self.evaluate_button], cancel_button=self.cancel_button,
        )  # fmt: skip
        self.follower = ActiveLayerFollower(
            viewer, [(self.sr, Image, True), (self.input, Image, False)]
        )
        self._suggest_inputs()
        self.sr.changed.connect(self._suggest_inputs)
        self.evaluate_button.changed.connect(self.evaluate)
        self.copy_button.changed.connect(self.copy_csv)
        self.metric.changed.connect(self._replot)
        viewer.events.theme.connect(self._theme_changed)

    @property
    def worker(self) -> Any:
        """The running thread worker (None when idle)."""
        return self.runner.worker

    def _theme_changed(self, event: Any) -> None:
        try:
            self.plot.apply_theme(event.value)
        except RuntimeError:
            self._viewer.events.theme.disconnect(self._theme_changed)

    def _suggest_inputs(self, _value: Any = None) -> None:
        """An SR layer made by the Super-resolve widget names its input and fibres: use them."""
        sr = self.sr.value
        if not isinstance(sr, Image):
            return
        layers = self._viewer.layers
        source = sr.metadata.get("cycsr_source")
        if source in layers and layers[source] is not sr and isinstance(layers[source], Image):
            self.input.value = layers[source]
        inp = self.input.value
        fibres = getattr(inp, "metadata", {}).get("cycsr_fibres") if inp is not None else None
        if self.fibres.value is None and fibres in layers and isinstance(layers[fibres], Points):
            self.fibres.value = layers[fibres]

    @guarded("Evaluate")
    def evaluate(self) -> None:
        """Compute the metrics of the displayed frame or of every frame in a worker."""
        from napari_cycsr.metrics import image_fov

        self.runner.check_free()
        sr_layer = require_layer(self.sr.value, "the super-resolved layer")
        lr_layer = require_layer(self.input.value, "the input layer")
        if sr_layer is lr_layer:
            raise ValueError("the super-resolved layer and the input must be different layers")
        stack = self.scope.value == "stack"
        viewer = self._viewer
        sr = layer_array(sr_layer, viewer, stack=stack, what="the super-resolved layer")
        lr = layer_array(lr_layer, viewer, stack=stack, what="the input")
        if sr.shape != lr.shape:
            raise ValueError(
                f"{sr_layer.name!r} is {_shape(sr_layer, sr)} but the input {lr_layer.name!r} "
                f"is {_shape(lr_layer, lr)}: evaluation compares images on one pixel grid "
                "(a model of another scale?)"
            )
        reference = None
        if self.reference.value is not None:
            ref_layer = require_layer(self.reference.value, "the reference layer")
            reference = layer_array(ref_layer, viewer, stack=stack, what="the reference")
            if reference.shape not in (sr.shape, sr.shape[-2:]):
                raise ValueError(
                    f"the reference {ref_layer.name!r} is {_shape(ref_layer, reference)}, the "
                    f"images are {_shape(sr_layer, sr)}; choose a reference on the same pixel grid"
                )
        bundle = None
        if self.fibres.value is not None:
            bundle = bundle_from_points(self.fibres.value, lr_layer)
        names = {"input": lr_layer.name, "sr": sr_layer.name}
        lead = sr.shape[:-2]
        n_frames = int(np.prod(lead)) if lead else 1
        fibres_name = self.fibres.value.name if bundle is not None else ""

        def _work() -> Any:
            from napari_cycsr.metrics import iter_evaluate_frames

            mask, where = None, "every pixel (no field of view found)"
            if bundle is not None:
                mask, where = bundle.fov_mask, f"the field of view of {fibres_name!r}"
            else:
                first = np.asarray(lr if lr.ndim == 2 else lr.reshape(-1, *lr.shape[-2:])[0])
                found = image_fov(first)
                if found is not None:
                    mask = found
                    where = "the field of view found from the input's flat surround"
            rows_all: list[dict[str, Any]] = []
            frames = iter_evaluate_frames(
                {names["input"]: lr, names["sr"]: sr}, reference=reference, lr=lr, mask=mask,
                bundle=bundle, sample_values=bundle is not None, with_sharpness=True,
            )  # fmt: skip
            for t, rows in enumerate(frames):
                rows_all.extend(rows)
                yield Step(t + 1, n_frames, f"frame {t + 1} of {n_frames} scored")
            coverage = 100.0 * (1.0 if mask is None else float(np.mean(mask)))
            return rows_all, where, coverage

        def _done(result: Any) -> None:
            rows_all, where, coverage = result
            self._show(rows_all, n_frames)
            ref = "with" if reference is not None else "without a"
            self.runner.say(
                f"finished: {n_frames} frame(s) scored {ref} reference, over {where} "
                f"({coverage:.0f} % of the frame)"
            )

        def _cancelled() -> None:
            self.runner.say("cancelled: nothing scored (the table keeps the last results)")

        self.runner.start(
            _work, where="Evaluate", on_return=_done, on_cancel=_cancelled, total=n_frames
        )

    def _show(self, frame_rows: list[dict[str, Any]], n_frames: int) -> None:
        from napari_cycsr.metrics import mean_over_frames

        self.frame_rows = frame_rows
        means = mean_over_frames(frame_rows)
        # columns that no row can fill (no reference, no fibres) are left out of the table
        shown = [
            k for k in means[0]
            if k == "method" or (k == "frames" and n_frames > 1)
            or (k != "frames" and any(math.isfinite(r[k]) for r in means))
        ]  # fmt: skip
        rows = [{k: row[k] for k in shown} for row in means]
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
        metrics = [c for c in columns if c not in ("method", "frames")]
        if self.metric.value not in metrics and metrics:
            self.metric.value = "gcf" if "gcf" in metrics else metrics[0]
        self._replot()

    def _replot(self, _value: Any = None) -> None:
        metric = self.metric.value
        series: dict[str, list[float]] = {}
        for row in self.frame_rows:
            series.setdefault(row["method"], []).append(float(row.get(metric, math.nan)))
        self.plot.show(series, metric)

    def copy_csv(self) -> str:
        """Put every score (every frame) on the clipboard as CSV and return the text."""
        from napari_cycsr.metrics import rows_to_csv

        if not self.frame_rows:
            return ""
        text = rows_to_csv(self.frame_rows)
        QApplication.clipboard().setText(text)
        self.runner.say("copied as CSV")
        return text
