"""Train widget: unsupervised training from LR layers in a worker, with live losses and preview."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, Select
from napari.layers import Image, Points

from ._common import (
    MODELS,
    bundle_from_points,
    image_data_2d,
    layer_choices,
    require_layer,
)
from ._preview import PREVIEW_NAME, PreviewLayer
from ._train_form import TARGETS, TrainForm, format_eta
from ._worker import guarded, run_in_thread
from .loss_plot import LossPlot

if TYPE_CHECKING:
    import napari

__all__ = ["PREVIEW_NAME", "TrainWidget"]


class TrainWidget(Container):
    """Train a cycle-consistent super-resolution model on the chosen LR layers.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the widget reads and adds the preview to.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.worker: Any = None
        self.trainer: Any = None
        self._stop_requested = False
        self._checkpoint: Path | None = None
        self._last_text = 0.0
        self.preview = PreviewLayer(viewer)
        images = layer_choices(viewer, Image)
        self.lr_layers = Select(label="LR layers", choices=images)
        self.fibres = ComboBox(label="fibres", choices=layer_choices(viewer, Points))
        self.target = ComboBox(label="target domain", choices=TARGETS, value="natural")
        self.target_layers = Select(label="HR layers", choices=images)
        for select in (self.lr_layers, self.target_layers):
            select.native.setMaximumHeight(80)
        self.form = TrainForm()
        self.model_path = FileEdit(label="save model to", mode="w", filter="*.safetensors")
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume")
        self.save_button = PushButton(text="Save model", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.lr_layers, self.fibres, self.target, self.target_layers, *self.form.basic,
                self.model_path, self.start_button, self.stop_button, self.resume_button,
                self.save_button, self.progress, self.status,
            ]
        )  # fmt: skip
        # the collapsible "Advanced" section goes right after the basic training fields
        self.native.layout().insertWidget(self.index(self.form.seed) + 1, self.form.collapsible)
        self.plot = LossPlot(viewer.theme)
        self.native.layout().addWidget(self.plot)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.resume_button.changed.connect(self.resume)
        self.save_button.changed.connect(self.save_model)
        viewer.events.theme.connect(self._theme_changed)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.reset_choices)

    def _theme_changed(self, event: Any) -> None:
        try:
            self.plot.apply_theme(event.value)
        except RuntimeError:  # the Qt widget is gone: stop listening
            self._viewer.events.theme.disconnect(self._theme_changed)

    # -- inputs -------------------------------------------------------------------------------
    def _inputs(self) -> dict[str, Any]:
        """The LR arrays, their bundles and the target images, checked, as Trainer takes them."""
        layers = list(self.lr_layers.value)
        if not layers:
            raise ValueError("choose one or more LR layers to train on (none selected)")
        for layer in layers:
            require_layer(layer, "each LR layer")
        points = require_layer(self.fibres.value, "the fibre Points layer", Points)
        lr_images = [np.asarray(image_data_2d(layer, stack=True)) for layer in layers]
        bundles = [bundle_from_points(points, layer) for layer in layers]
        target = self.target.value
        targets = None
        if target in ("images", "paired"):
            chosen = list(self.target_layers.value)
            if not chosen:
                raise ValueError(f"the target domain {target!r} needs HR layers; choose some")
            for layer in chosen:
                require_layer(layer, "each HR layer")
            targets = [np.asarray(image_data_2d(layer, stack=True)) for layer in chosen]
        return {
            "lr_images": lr_images, "bundles": bundles, "target": target,
            "target_images": targets, "first": layers[0],
        }  # fmt: skip

    def _checkpoint_path(self) -> Path:
        path = self._model_path(required=False)
        if path is not None:
            return path.with_name(path.stem + ".checkpoint.safetensors")
        if self._checkpoint is None:
            self._checkpoint = Path(tempfile.mkdtemp(prefix="cycsr-")) / "checkpoint.safetensors"
        return self._checkpoint

    def _model_path(self, required: bool = True) -> Path | None:
        value = str(self.model_path.value)
        if value in ("", "."):
            if required:
                raise ValueError("choose where to save the model (a .safetensors file)")
            return None
        path = Path(value)
        if path.suffix != ".safetensors":
            raise ValueError(f"the model file must end in .safetensors, got {path.name!r}")
        return path

    # -- actions ------------------------------------------------------------------------------
    @guarded("Train")
    def start(self) -> None:
        """Start a new training run in a worker thread."""
        from napari_cycsr.training import Trainer

        inputs = self._inputs()
        config = self.form.config()
        checkpoint = self._checkpoint_path()
        self.plot.clear(total=config.iterations)

        def make() -> Any:
            return Trainer(
                inputs["lr_images"], inputs["bundles"], inputs["target"], config,
                target_images=inputs["target_images"], checkpoint=checkpoint,
            )  # fmt: skip

        self._launch(make, inputs["first"])

    @guarded("Resume")
    def resume(self) -> None:
        """Continue from the last checkpoint up to the iterations set in the form."""
        from napari_cycsr.training import Trainer

        checkpoint = self._checkpoint_path()
        if not checkpoint.is_file():
            raise ValueError(f"no checkpoint to resume from at {checkpoint}; press Start first")
        inputs = self._inputs()
        config = self.form.config()

        def make() -> Any:
            return Trainer.resume(
                checkpoint, inputs["lr_images"], inputs["bundles"], inputs["target"],
                target_images=inputs["target_images"], iterations=config.iterations,
                device=config.device,
            )  # fmt: skip

        self._launch(make, inputs["first"])

    def _launch(self, make: Any, first: Image) -> None:
        self._stop_requested = False
        save_to = self._model_path(required=False)

        def work() -> Any:
            trainer = make()
            self.trainer = trainer
            if trainer.iteration >= trainer.total:
                raise ValueError(
                    f"the checkpoint is at iteration {trainer.iteration}; set iterations above "
                    "that to train longer"
                )
            if not self._stop_requested:
                yield from trainer.run()
            if save_to is not None:
                trainer.save(save_to)
            return trainer

        self._set_running(True)
        self.preview.prepare(first, enabled=bool(self.form.preview_every.value))
        self.status.value = "preparing patches and networks..."
        self.worker = run_in_thread(
            work, where="Training", on_yield=lambda event: self._on_event(event, first),
            on_return=self._on_done,
            on_error=lambda failure: setattr(self.status, "value", failure.message),
            on_finish=self._finished,
        )  # fmt: skip

    def _finished(self) -> None:
        self.preview.drop_if_empty()
        self._set_running(False)

    def _on_event(self, event: Any, first: Image) -> None:
        # every repaint costs the main thread; fast runs (many events a second) refresh the
        # texts at most 4 times a second, the plot at most twice
        self.plot.append(event.iteration, event.losses, total=event.total)
        now = time.monotonic()
        if now - self._last_text >= 0.25 or event.done or event.stopped:
            self._last_text = now
            if self.progress.max != event.total:
                self.progress.max = event.total
            self.progress.value = event.iteration
            self.status.value = (
                f"iteration {event.iteration}/{event.total}, "
                f"{event.seconds_per_iteration:.2f} s/it, ETA {format_eta(event.eta_seconds)}"
            )
        if event.preview is not None:
            self.preview.show(event.preview, first, self.trainer.preview_crop)

    def _on_done(self, trainer: Any) -> None:
        name = MODELS.register(f"trained ({trainer.iteration} it)", trainer.model)
        saved = self._model_path(required=False)
        where = f", saved to {saved.name}" if saved is not None else ""
        self.status.value = f"stopped at iteration {trainer.iteration}: model '{name}'{where}"

    def stop(self) -> None:
        """Ask the trainer to stop after the current iteration (a checkpoint is written)."""
        self._stop_requested = True
        if self.trainer is not None:
            self.trainer.stop()
        self.status.value = "stopping after this iteration..."

    @guarded("Save model")
    def save_model(self) -> None:
        """Write the trained model to the chosen file."""
        if self.trainer is None:
            raise ValueError("train a model first")
        path = self.trainer.save(self._model_path())
        self.status.value = f"saved {Path(path).name}"

    def _set_running(self, running: bool) -> None:
        self.start_button.enabled = self.resume_button.enabled = not running
        self.stop_button.enabled = running
        self.save_button.enabled = not running and self.trainer is not None
        if not running:
            self.worker = None
            self.plot.refresh(force=True)
