"""Train widget: unsupervised training from LR layers in a worker, with live losses and preview."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, Label, ProgressBar, PushButton, Select
from napari.layers import Image, Points

from napari_cycsr._validate import positive_spacing
from napari_cycsr.models_store import model_details, save_to_folder, saved_models, unique_name

from ._common import MODELS, bundle_from_points, points_to_pixels
from ._form import Form
from ._layers import ActiveLayerFollower, layer_array, layer_choices, pick_layer, require_layer
from ._model_menu import FROM_FILE, choice_label, load_choice, model_choices
from ._preview import PREVIEW_NAME, PreviewLayer
from ._train_form import TARGETS, TrainForm, format_eta
from ._worker import Runner, guarded
from .loss_plot import LossPlot

if TYPE_CHECKING:
    import napari

__all__ = ["FROM_SCRATCH", "PREVIEW_NAME", "TrainWidget", "model_name"]

#: Choice of the "start from" menu meaning a new network (no fine-tuning).
FROM_SCRATCH = "nothing (from scratch)"


def model_name(config: Any, iterations: int, layers: list[str], *, init: str | None = None) -> str:
    """A model's name from what made it: preset, scale, iterations, training layers and the
    model it was fine-tuned from (``init``)."""
    data = layers[0] + (f" +{len(layers) - 1}" if len(layers) > 1 else "")
    name = f"{config.preset} x{config.scale}, {iterations} it on {data}"
    return name + (f", fine-tuned from {init}" if init else "")


def _carried_text(carried: dict[str, Any]) -> str:
    """The carried settings that differ from the library's defaults, as ``key=value``."""
    from napari_cycsr.config import TrainConfig

    defaults = TrainConfig().to_dict()
    changed = {k: v for k, v in sorted(carried.items()) if defaults.get(k) != v}
    text = ", ".join(f"{k}={v}" for k, v in changed.items()) or "all at the defaults"
    return text + (" (the others at the defaults)" if 0 < len(changed) < len(carried) else "")


def _require_videos(inputs: dict[str, Any]) -> None:
    for name, image in zip(inputs["names"], inputs["lr_images"]):
        if image.ndim != 3 or len(image) < 2:
            raise ValueError(
                f"'learn from video' needs LR layers that are videos (stacks of frames of a "
                f"moving scene); {name!r} is a single image: untick it or choose a video"
            )


def _video_inputs(inputs: dict[str, Any], config: Any) -> tuple[dict[str, Any], Any]:
    """With "learn from video": every LR layer registered, fused, and the config to match
    (:func:`napari_cycsr.workflows.video_training`; run in the worker, it takes a while)."""
    import dataclasses

    from napari_cycsr.workflows import video_training

    _require_videos(inputs)
    lists: dict[str, list] = {"lr_images": [], "bundles": [], "registration": [], "targets": []}
    settings: dict[str, Any] = {}
    for image, bundle in zip(inputs["lr_images"], inputs["bundles"]):
        prepared = video_training(image, bundle)
        lists["lr_images"] += prepared.lr_images
        lists["bundles"] += prepared.bundles
        lists["registration"] += prepared.registration
        lists["targets"] += prepared.target_images or []
        settings = prepared.settings
    out = {**inputs, "lr_images": lists["lr_images"], "bundles": lists["bundles"]}
    out.update(registration=lists["registration"], target_images=lists["targets"] or None)
    out["target"] = settings.pop("target", inputs["target"])
    return out, dataclasses.replace(config, target=out["target"], **settings)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(s)) for s in shape)


class TrainWidget(Form):
    """Train a cycle-consistent super-resolution model on the chosen LR layers.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the widget reads and adds the preview to.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.trainer: Any = None
        self.model: Any = None
        self.model_file: Path | None = None
        self._checkpoint: Path | None = None
        self._note: str | None = None
        self._last_text = 0.0
        self.preview = PreviewLayer(viewer)
        images = layer_choices(viewer, Image)
        self.lr_layers = Select(
            label="LR layers", choices=images,
            tooltip="The low-resolution (TLI) images or stacks to train on; Ctrl/Cmd-click "
            "selects several. All must come from the bundle of the fibres below (same size).",
        )  # fmt: skip
        self.fibres = ComboBox(
            label="fibres", choices=layer_choices(viewer, Points),
            tooltip="The fibre Points layer of the LR layers (one probe).",
        )  # fmt: skip
        self.target = ComboBox(
            label="target domain", choices=TARGETS, value="natural",
            tooltip="What high resolution should look like: built-in natural pictures, your "
            "HR layers, the LR images downscaled x4 (paper's T_res), or registered HR layers.",
        )  # fmt: skip
        self.target_layers = Select(
            label="HR layers", choices=images,
            tooltip="High-resolution images for the 'chosen HR layers' and 'paired HR layer' "
            "targets (paired: one per LR layer, in the same order, scale x its size).",
        )  # fmt: skip
        for select in (self.lr_layers, self.target_layers):
            select.native.setMaximumHeight(80)
        self.start_from = ComboBox(
            label="start from", choices=self._start_choices,
            tooltip="Fine-tuning: start the network from a trained model (this session's, "
            "your models folder's, a pretrained one or a model file) instead of from scratch. "
            "Its network size, output scale and intensity scaling are kept and its loss "
            "settings carried; a loss weight you change under Advanced wins.",
        )  # fmt: skip
        self.start_file = FileEdit(
            label="start model file", mode="r", filter="*.safetensors", visible=False,
            tooltip="The model file (.safetensors) to fine-tune; loading never runs code.",
        )  # fmt: skip
        self.start_details = Label(value="", visible=False, tooltip="The model to start from.")
        self.start_details.native.setWordWrap(True)
        #: the start model's settings shown in the form ({field: value}), None: from scratch
        self._shown: dict[str, Any] | None = None
        self._free: dict[str, Any] = {}  # the loss weights as they were before a start model
        self._start_recipe: Any = None  # the start model's train_config
        self._start_text = ""  # what the start model is (model_details)
        self._start_spacing: float | None = None  # the fibre spacing the start model learned at
        self.form = TrainForm()
        self.model_path = FileEdit(
            label="save model to", mode="w", filter="*.safetensors",
            tooltip="Model file (.safetensors). Empty: the model is kept in your models folder "
            "(listed by the Super-resolve widget in every session).",
        )  # fmt: skip
        self.start_button = PushButton(text="Start", tooltip="Train a new model in the background.")
        self.stop_button = PushButton(
            text="Stop", tooltip="Stop after the current iteration; the model and a checkpoint "
            "are kept.",
        )  # fmt: skip
        self.resume_button = PushButton(
            text="Resume", tooltip="Continue from the last checkpoint up to 'iterations'."
        )
        self.save_button = PushButton(
            text="Save model", enabled=False,
            tooltip="Write the trained model again, e.g. to another file.",
        )  # fmt: skip
        self.progress = ProgressBar(
            value=0, min=0, max=1, label="progress", tooltip="Iterations done."
        )
        self.status = Label(value="", tooltip="What the training is doing.")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.lr_layers, self.fibres, self.target, self.target_layers, self.start_from,
                self.start_file, self.start_details, *self.form.basic,
                self.model_path, self.start_button, self.stop_button, self.resume_button,
                self.save_button, self.progress, self.status,
            ]
        )  # fmt: skip
        # the collapsible "Advanced" section goes right after the basic training fields
        self.add_qt(self.form.collapsible, self.layout_index(self.form.basic[-1]) + 1)
        self.plot = LossPlot(viewer.theme)
        self.plot.setToolTip("Training losses (log scale) against iteration.")
        self.add_qt(self.plot)
        self.finish()
        self.runner = Runner(
            self, viewer, "Train", progress=self.progress, status=self.status,
            busy_widgets=[self.start_button, self.resume_button, self.save_button],
            cancel_button=self.stop_button,
        )  # fmt: skip
        self.follower = ActiveLayerFollower(viewer, [(self.fibres, Points, True)])
        self._default_lr()
        self.start_button.changed.connect(self.start)
        self.resume_button.changed.connect(self.resume)
        self.save_button.changed.connect(self.save_model)
        self.start_from.changed.connect(self._start_changed)
        self.start_file.changed.connect(self._start_changed)
        self.form.video.changed.connect(self._show_carried)  # a paired run keeps more
        # the frames' fibre spacing against the start model's (resampled or not)
        self.fibres.changed.connect(self._show_carried)
        self.lr_layers.changed.connect(self._show_carried)
        MODELS.changed.connect(self._models_changed)
        viewer.events.theme.connect(self._theme_changed)
        viewer.layers.events.inserted.connect(self._default_lr)

    @property
    def worker(self) -> Any:
        """The running thread worker (None when idle)."""
        return self.runner.worker

    def _default_lr(self, _event: Any = None) -> None:
        try:
            if not self.lr_layers.value:
                self.lr_layers.reset_choices()
                layer = pick_layer(
                    self._viewer, Image, accept=lambda layer: layer.name != PREVIEW_NAME
                )
                if layer is not None:
                    self.lr_layers.value = [layer]
        except RuntimeError:  # the widget is gone
            self._viewer.layers.events.inserted.disconnect(self._default_lr)

    # -- the model to start from -------------------------------------------------------------
    def _start_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(FROM_SCRATCH, FROM_SCRATCH), *model_choices()]

    def _models_changed(self) -> None:
        try:
            self.start_from.reset_choices()
        except RuntimeError:  # the Qt widget is gone: stop listening
            MODELS.changed.disconnect(self._models_changed)

    def _start_model(self) -> tuple[Any, str] | None:
        """The model to start from and its name (None: from scratch), or a ValueError."""
        choice = self.start_from.value
        if choice in (None, FROM_SCRATCH):
            return None
        path = None
        if choice == FROM_FILE:
            path = Path(str(self.start_file.value))
            if str(self.start_file.value) in ("", ".") or not path.is_file():
                raise ValueError(
                    f"choose the model file to start from (.safetensors); {str(path)!r} is no file"
                )
        label = choice_label(choice, path)
        try:
            model = load_choice(choice, path)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"cannot start from the model {label!r}: {err}") from None
        if isinstance(choice, Path) or choice == FROM_FILE:  # our own copy: give it a name
            if not model.metadata.get("name") and not model.metadata.get("pretrained_name"):
                model.metadata = {**model.metadata, "name": label}
        return model, label

    def _paired_run(self) -> bool:
        """Whether the run the form describes has paired targets of its own: "learn from
        video" trains against the fused video as a paired target with a pixel loss
        (:func:`napari_cycsr.workflows.video_training`), as ``cycsr train --video`` does."""
        return bool(self.form.video.value)

    def _fine_tuning(self, model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The start model's network fields and the loss settings carried from it: the form's
        loss weights win where the user changed them from the model's (as ``--set`` does).
        With "learn from video" the run is a paired one, and a model trained against paired
        targets keeps its own objective (:func:`napari_cycsr.config.recipe_losses`)."""
        from napari_cycsr.config import fine_tune_settings

        shown = self._shown or {}
        given = {k: c.value for k, c in self.form.losses.items() if shown.get(k) != c.value}
        given.update(preset=self.form.preset.value, scale=self.form.scale.value)
        if self._paired_run():  # the target the video run will have (set in the worker)
            given["target"] = "paired"
        return fine_tune_settings(model.generator.config, model.metadata.get("train_config"), given)

    def _start_changed(self, _value: Any = None) -> None:
        """Show the chosen start model, lock the network to its own, fill in its loss weights."""
        from napari_cycsr.config import fine_tune_settings

        choice = self.start_from.value
        self.start_file.visible = choice == FROM_FILE
        if self._shown is not None:  # back to the user's own loss weights first
            for key, control in self.form.losses.items():
                control.value = self._free[key]
        self._shown = None
        self._start_spacing = None
        self.form.fix_network()
        text = ""
        try:
            start = None
            if choice != FROM_FILE or str(self.start_file.value) not in ("", "."):
                start = self._start_model()
            if start is not None:
                model, _ = start
                recipe = model.metadata.get("train_config")
                network, _ = fine_tune_settings(model.generator.config, recipe)
                self._free = {k: c.value for k, c in self.form.losses.items()}
                self._shown = {}
                self._start_recipe = recipe
                self._start_text = model_details(model.metadata, model.generator.config.to_dict())
                self._start_spacing = positive_spacing(model.metadata.get("fibre_spacing"))
                self.form.fix_network(network["preset"], network["scale"])
                self._show_carried()
                return
        except ValueError as err:
            text = f"cannot start from this model: {err}"
        self.start_details.value = text
        self.start_details.visible = bool(text)

    def _show_carried(self, _value: Any = None) -> None:
        """Fill in the start model's loss settings for the run the form describes (with or
        without "learn from video": :meth:`_paired_run`) and say what it carries. A loss
        weight the user changed from the one shown keeps the user's value."""
        from napari_cycsr.config import recipe_losses

        if self._shown is None:  # from scratch: nothing is carried
            return
        recipe = self._start_recipe
        carried = recipe_losses(recipe, paired=self._paired_run())
        for key, value in carried.items():
            control = self.form.losses.get(key)
            if control is not None and self._shown.get(key, control.value) == control.value:
                control.value = value
                self._shown[key] = control.value  # as the field rounds
        text = self._start_text
        if not carried:
            text += "\nno loss settings recorded in it: the form's are used"
        else:
            text += "\ncarries its loss settings: " + _carried_text(carried)
            own = recipe_losses(recipe, paired=True)
            if own != recipe_losses(recipe, paired=False):
                # a model trained against paired targets: "learn from video" keeps its own
                # objective, single frames hold the output to the model (w_anchor)
                text += (
                    "\n(learn from video: the fused video is a paired target, so it keeps its "
                    "own objective)"
                    if self._paired_run()
                    else f"\n(trained against paired targets: without them the output is held "
                    f"to the model's, w_anchor={carried.get('w_anchor')}; 'learn from video' "
                    "keeps its own objective)"
                )
        spacing = self._spacing_text()
        self.start_details.value = text + (f"\n{spacing}" if spacing else "")
        self.start_details.visible = True

    def _spacing_text(self) -> str:
        """What the start model's fibre spacing does to the chosen frames, said before Start:
        the run learns at the model's spacing (``Trainer(fibre_spacing="auto")``), so frames
        whose fibres lie another distance apart are resampled to it."""
        from napari_cycsr.data import spacing_zoom
        from napari_cycsr.fibres import centre_spacing

        points, layers = self.fibres.value, list(self.lr_layers.value or [])
        if self._start_spacing is None or points is None or not layers:
            return ""
        try:
            own = centre_spacing(points_to_pixels(points, layers[0]))
        except ValueError:  # too few points: Start says what is wrong
            return ""
        model = self._start_spacing
        zoom = spacing_zoom(model, own)
        if zoom == 1.0:
            return f"its fibre spacing ({model:.2f} px) is the frames' ({own:.2f} px)"
        return (
            f"frames resampled x{zoom:.2f} to its fibre spacing of {model:.2f} px (theirs: "
            f"{own:.2f} px, fibres {points.name!r}) to learn at it, as Super-resolve runs it"
        )

    def _theme_changed(self, event: Any) -> None:
        try:
            self.plot.apply_theme(event.value)
        except RuntimeError:  # the Qt widget is gone: stop listening
            self._viewer.events.theme.disconnect(self._theme_changed)

    # -- inputs -------------------------------------------------------------------------------
    def _inputs(self, scale: int) -> dict[str, Any]:
        """The LR arrays, their bundles and the target images, checked, as Trainer takes them."""
        layers = list(self.lr_layers.value)
        if not layers:
            raise ValueError("choose one or more LR layers to train on (none selected)")
        for layer in layers:
            require_layer(layer, "each LR layer")
        points = require_layer(self.fibres.value, "the fibre Points layer", Points)
        lr_images = [np.asarray(layer_array(ly, stack=True, what="the LR layer")) for ly in layers]
        sizes = {img.shape[-2:] for img in lr_images}
        if len(sizes) > 1:
            listed = ", ".join(f"{ly.name!r} {_shape_text(im.shape[-2:])}"
                               for ly, im in zip(layers, lr_images))  # fmt: skip
            raise ValueError(
                f"the LR layers have different sizes ({listed}) but share one fibres layer: "
                "train on layers of one probe and one size"
            )
        bundles = [bundle_from_points(points, layer) for layer in layers]
        target = self.target.value
        targets = None
        if target in ("images", "paired"):
            chosen = list(self.target_layers.value)
            if not chosen:
                raise ValueError(f"the target domain {target!r} needs HR layers; choose some")
            for layer in chosen:
                require_layer(layer, "each HR layer")
            targets = [
                np.asarray(layer_array(ly, stack=True, what="the HR layer")) for ly in chosen
            ]
            if target == "paired":
                self._check_paired(layers, lr_images, chosen, targets, scale)
        return {
            "lr_images": lr_images, "bundles": bundles, "target": target,
            "target_images": targets, "first": layers[0], "names": [ly.name for ly in layers],
            "fibres": points.name,
        }  # fmt: skip

    @staticmethod
    def _check_paired(lr_layers: list, lr: list, hr_layers: list, hr: list, scale: int) -> None:
        if len(hr) != len(lr):
            raise ValueError(
                f"a paired target needs one HR layer per LR layer, in the same order: "
                f"{len(lr)} LR layer(s), {len(hr)} HR layer(s) chosen"
            )
        for lr_layer, lr_image, hr_layer, hr_image in zip(lr_layers, lr, hr_layers, hr):
            expected = (*lr_image.shape[:-2], *(scale * s for s in lr_image.shape[-2:]))
            if tuple(hr_image.shape) != tuple(expected):
                raise ValueError(
                    f"the paired HR layer {hr_layer.name!r} is {_shape_text(hr_image.shape)}; "
                    f"it must be {_shape_text(expected)} (the LR layer {lr_layer.name!r} "
                    f"x{scale}, registered to it)"
                )

    def _checkpoint_path(self) -> Path:
        path = self._model_path(required=False)
        if path is not None:
            from napari_cycsr.workflows import checkpoint_path_for

            return checkpoint_path_for(path)  # the name `cycsr train` uses too
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
        import dataclasses

        from napari_cycsr.training import Trainer

        self.runner.check_free()
        config = self.form.config()
        if config.threads is None:  # leave one CPU to napari's GUI thread
            from napari_cycsr._device import gui_threads

            config = dataclasses.replace(config, threads=gui_threads())
        inputs = self._inputs(config.scale)
        start = self._start_model()
        init, note = None, None
        if start is not None:  # fine-tuning: the model's network and objective
            init, label = start
            network, carried = self._fine_tuning(init)
            config = dataclasses.replace(config, **network, **carried)
            note = f"fine-tuning from {label!r}" + (
                "; carried from it: " + _carried_text(carried) if carried else ""
            )
        checkpoint = self._checkpoint_path()
        self.plot.clear(total=config.iterations)

        video = self.form.video.value
        if video:
            _require_videos(inputs)  # refused before any work

        def make() -> Any:
            data, run_config = _video_inputs(inputs, config) if video else (inputs, config)
            return Trainer(
                data["lr_images"], data["bundles"], data["target"], run_config,
                target_images=data["target_images"], checkpoint=checkpoint,
                registration=data.get("registration"), init=init,
            )  # fmt: skip

        self._launch(make, inputs, config, note=note)

    @guarded("Resume")
    def resume(self) -> None:
        """Continue from the last checkpoint up to the iterations set in the form."""
        from napari_cycsr.training import Trainer

        self.runner.check_free()
        checkpoint = self._checkpoint_path()
        if not checkpoint.is_file():
            raise ValueError(f"no checkpoint to resume from at {checkpoint}; press Start first")
        config = self.form.config()
        inputs = self._inputs(config.scale)

        video = self.form.video.value
        if video:
            _require_videos(inputs)

        def make() -> Any:
            data, _ = _video_inputs(inputs, config) if video else (inputs, config)
            return Trainer.resume(
                checkpoint, data["lr_images"], data["bundles"], data["target"],
                target_images=data["target_images"], iterations=config.iterations,
                device=config.device, registration=data.get("registration"),
            )  # fmt: skip

        self._launch(make, inputs, config)

    def _launch(
        self, make: Any, inputs: dict[str, Any], config: Any, note: str | None = None
    ) -> None:
        save_to = self._model_path(required=False)
        self._note = note
        first = inputs["first"]
        training_data = [
            f"{name} ({_shape_text(img.shape)})"
            for name, img in zip(inputs["names"], inputs["lr_images"])
        ]
        holder: dict[str, Any] = {}

        def stop() -> None:
            holder["stop"] = True
            if holder.get("trainer") is not None:
                holder["trainer"].stop()

        def work() -> Any:
            trainer = make()
            holder["trainer"] = self.trainer = trainer
            if trainer.iteration >= trainer.total:
                raise ValueError(
                    f"the checkpoint is at iteration {trainer.iteration}; set iterations above "
                    "that to train longer"
                )
            if not holder.get("stop"):
                yield from trainer.run()
            # saved here, in the worker: the model is kept even when the viewer is closed
            model = trainer.model
            init = model.metadata.get("initialised_from")
            name = unique_name(
                model_name(trainer.config, trainer.iteration, inputs["names"], init=init),
                {*MODELS.names(), *(m.name for m in saved_models())},
            )
            model.metadata = {
                **model.metadata, "name": name, "training_data": training_data,
                "fibres": inputs["fibres"],
            }  # fmt: skip
            if save_to is not None:
                from napari_cycsr.io import save_model

                path = save_model(model, save_to)
            else:
                path = save_to_folder(model, name)
            return trainer, model, name, Path(path)

        self.preview.prepare(first, enabled=bool(self.form.preview_every.value))
        self.runner.start(
            work, where="Training", on_yield=lambda event: self._on_event(event, first),
            on_return=self._on_done, on_finish=self._finished, cancel=stop,
            total=config.iterations,
        )  # fmt: skip
        self.runner.say((f"{note}; " if note else "") + "preparing patches and networks...")

    def _finished(self) -> None:
        self.preview.drop_if_empty()
        self.save_button.enabled = self.model is not None

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
            self.runner.say(
                f"iteration {event.iteration}/{event.total}, "
                f"{event.seconds_per_iteration:.2f} s/it, ETA {format_eta(event.eta_seconds)}"
            )
        if event.preview is not None:
            self.preview.show(event.preview, first, self.trainer.preview_crop)

    def _on_done(self, result: Any) -> None:
        trainer, model, name, path = result
        self.model, self.model_file = model, path
        name = MODELS.register(name, model)
        if trainer.iteration >= trainer.total:
            how = f"finished {trainer.iteration} iterations"
        else:
            how = f"stopped at iteration {trainer.iteration} of {trainer.total}"
        note = "".join(f"{n}\n" for n in (self._note, trainer.spacing_note()) if n)
        details = model_details(model.metadata)
        self.runner.say(f"{how}: model '{name}' saved to {path}\n{note}{details}")
        self.plot.refresh(force=True)

    def stop(self) -> None:
        """Ask the trainer to stop after the current iteration (a checkpoint is written)."""
        self.runner.cancel()

    @guarded("Save model")
    def save_model(self) -> None:
        """Write the trained model to the chosen file."""
        from napari_cycsr.io import save_model

        if self.model is None:
            raise ValueError("train a model first")
        path = save_model(self.model, self._model_path())
        self.runner.say(f"saved {Path(path).name}")
