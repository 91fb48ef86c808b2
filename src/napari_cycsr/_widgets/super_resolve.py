"""Super-resolve widget: apply a trained model to an image layer, in a thread, cancellable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Points

from ._common import (
    MODELS,
    bundle_from_points,
    layer_choices,
    output_spatial,
    require_layer,
)
from ._worker import guarded, run_in_thread

if TYPE_CHECKING:
    import napari

__all__ = ["FROM_FILE", "SuperResolveWidget"]

#: Choice of the model menu meaning "load the model file below".
FROM_FILE = "<model file>"


class SuperResolveWidget(Container):
    """Run a super-resolution model on a 2-D image or stack; the result is a new layer.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the widget reads and adds to.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari_cycsr._device import PRECISION_HELP, available_devices, precision_choices

        super().__init__()
        self._viewer = viewer
        self.worker: Any = None
        self.image = ComboBox(label="image", choices=layer_choices(viewer, Image))
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.model_file = FileEdit(label="model file", mode="r", filter="*.safetensors")
        self.fibres = ComboBox(
            label="fibres (optional)", choices=layer_choices(viewer, Points), nullable=True,
            value=None, tooltip="Masks the output to the field of view; checks the model's scale.",
        )  # fmt: skip
        self.consistency = CheckBox(
            text="Enforce fibre consistency", value=False, enabled=False,
            tooltip="Project the output onto the fibre values measured in the input (the cell "
            "means of the result then equal them; see docs/consistency.md). Needs fibres.",
        )  # fmt: skip
        self.device = ComboBox(label="device", choices=["auto", *available_devices()])
        self.precision = ComboBox(
            label="precision", choices=precision_choices(), value="auto",
            tooltip=PRECISION_HELP,
        )  # fmt: skip
        self.tile = SpinBox(
            label="tile (px, 0 = auto)", value=0, min=0, max=8192, step=64,
            tooltip="Process large frames in windows of this size to bound memory.",
        )  # fmt: skip
        self.run_button = PushButton(text="Super-resolve")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.image, self.model, self.model_file, self.fibres, self.consistency,
                self.device, self.precision, self.tile,
                self.run_button, self.cancel_button, self.progress, self.status,
            ]
        )  # fmt: skip
        self.run_button.changed.connect(self.run)
        self.fibres.changed.connect(self._fibres_changed)
        self.cancel_button.changed.connect(self.cancel)
        MODELS.changed.connect(self._models_changed)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.reset_choices)

    def _fibres_changed(self, value: Any = None) -> None:
        # on by default whenever fibres are chosen; meaningless without them
        has_fibres = self.fibres.value is not None
        self.consistency.enabled = has_fibres
        self.consistency.value = has_fibres

    def _models_changed(self) -> None:
        try:
            self.model.reset_choices()
        except RuntimeError:  # the Qt widget is gone: stop listening
            MODELS.changed.disconnect(self._models_changed)

    def _model_choices(self, _widget: Any = None) -> list[str]:
        return [*MODELS.names(), FROM_FILE]

    def _get_model(self, choice: str, path: Path | None) -> Any:
        if choice != FROM_FILE:
            return MODELS.get(choice)
        from napari_cycsr.io import load_model

        return load_model(path)

    @guarded("Super-resolve")
    def run(self) -> None:
        """Start super-resolving the chosen layer (whole stack) in a worker thread."""
        from napari_cycsr.inference import check_model_spacing, iter_super_resolve

        layer = require_layer(self.image.value, "the image to super-resolve")
        data = layer.data[0] if layer.multiscale else layer.data
        choice = self.model.value
        path = None
        if choice == FROM_FILE:
            path = Path(self.model_file.value)
            if not path.is_file():
                raise ValueError(f"choose a model file (.safetensors); {str(path)!r} is no file")
        mask, spacing, bundle = None, None, None
        if self.fibres.value is not None:
            bundle = bundle_from_points(self.fibres.value, layer)
            mask, spacing = bundle.fov_mask, bundle.spacing
        project = bundle if bundle is not None and self.consistency.value else None
        device = self.device.value
        precision = self.precision.value
        tile = self.tile.value or None

        def _work() -> Any:
            model = self._get_model(choice, path)
            if spacing is not None:
                check_model_spacing(model, spacing)
            result = yield from iter_super_resolve(
                model, data, device=device, tile=tile, mask=mask, bundle=project,
                precision=precision,
            )  # fmt: skip
            return model.scale, result

        def _progress(event: Any) -> None:
            done, total = event
            self.progress.max = max(int(total), 1)
            self.progress.value = int(done)
            self.status.value = f"{done} / {total} windows"

        def _done(value: Any) -> None:
            scale, result = value
            self._add_result(layer, result, scale)

        self._set_running(True)
        self.status.value = "starting..."
        self.worker = run_in_thread(
            _work, where="Super-resolve", on_yield=_progress, on_return=_done,
            on_error=lambda failure: setattr(self.status, "value", failure.message),
            on_finish=lambda: self._set_running(False),
        )  # fmt: skip
        self.worker.aborted.connect(lambda: setattr(self.status, "value", "cancelled"))

    def _add_result(self, layer: Image, result: Any, scale: int) -> None:
        kwargs = output_spatial(layer, scale)
        self._viewer.add_image(
            result, name=f"{layer.name} [SR]", contrast_limits=tuple(layer.contrast_limits),
            colormap=layer.colormap, **kwargs,
        )  # fmt: skip
        kind = "lazy (dask)" if not isinstance(result, np.ndarray) else "done"
        self.status.value = f"{kind}: {tuple(result.shape)} (x{scale})"

    def cancel(self) -> None:
        """Stop the running job between two batches of windows; no layer is added."""
        if self.worker is not None:
            self.worker.quit()

    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        if not running:
            self.worker = None
