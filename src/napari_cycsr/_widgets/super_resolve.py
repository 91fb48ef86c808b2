"""Super-resolve widget: apply a model to a layer, several layers or a folder, in a thread.

The worker runs torch on every CPU but one (:func:`napari_cycsr._device.gui_threads`): the
last stays with napari's GUI thread, which draws the canvas and the progress while it works.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Image, Points

from napari_cycsr._device import gui_threads
from napari_cycsr._progress import relay
from napari_cycsr.models_store import model_details, saved_models

from ._common import MODELS, bundle_from_points, output_spatial
from ._form import Form
from ._layers import ActiveLayerFollower, layer_array, layer_choices, require_layer
from ._model_menu import FROM_FILE, PRETRAINED, choice_label, load_choice, model_choices
from ._worker import Runner, Step, guarded

if TYPE_CHECKING:
    import napari

__all__ = ["FROM_FILE", "PRETRAINED", "SOURCES", "SuperResolveWidget"]

#: What to super-resolve: (label, value).
SOURCES = [
    ("the chosen layer", "layer"),
    ("several layers", "layers"),
    ("a folder of images", "folder"),
]


def _empty(path: Any) -> bool:
    return str(path) in ("", ".")


class SuperResolveWidget(Form):
    """Run a super-resolution model on image layers or files; results are new layers / files.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the widget reads and adds to.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari_cycsr._device import PRECISION_HELP, available_devices, precision_choices
        from napari_cycsr.config import DEFAULT_ENSEMBLE, ENSEMBLE_SIZES

        super().__init__()
        self._viewer = viewer
        self.source = ComboBox(
            label="run on", choices=SOURCES, value="layer",
            tooltip="One layer, several layers (one result layer each), or every image file "
            "of a folder (results written as files).",
        )  # fmt: skip
        self.image = ComboBox(
            label="image", choices=layer_choices(viewer, Image),
            tooltip="The image or stack to super-resolve. Follows the layer you select.",
        )  # fmt: skip
        self.layers = Select(
            label="layers", choices=layer_choices(viewer, Image), visible=False,
            tooltip="The layers to super-resolve (Ctrl/Cmd-click selects several).",
        )  # fmt: skip
        self.layers.native.setMaximumHeight(80)
        self.folder = FileEdit(
            label="input folder", mode="d", visible=False,
            tooltip="Every TIFF/PNG/NPY image of this folder is super-resolved (earlier "
            "results, *_sr files, are skipped).",
        )  # fmt: skip
        self.model = ComboBox(
            label="model", choices=self._model_choices,
            tooltip="A model trained in this session, one from your models folder (saved), or "
            "<model file> to load any .safetensors model file.",
        )  # fmt: skip
        self.model_file = FileEdit(
            label="model file", mode="r", filter="*.safetensors",
            tooltip="A model file (.safetensors + JSON metadata); loading never runs code.",
        )  # fmt: skip
        self.details = Label(value="", tooltip="What made the chosen model.")
        self.details.native.setWordWrap(True)
        self.fibres = ComboBox(
            label="fibres (optional)", choices=layer_choices(viewer, Points), nullable=True,
            value=None, tooltip="Masks the output to the field of view; checks the model's scale.",
        )  # fmt: skip
        self.consistency = CheckBox(
            text="Enforce fibre consistency", value=False, enabled=False,
            tooltip="Project the output onto the fibre values measured in the input (the cell "
            "means of the result then equal them; see docs/consistency.md). Needs fibres.",
        )  # fmt: skip
        self.video_noise = CheckBox(
            text="Noise level from the video", value=False, enabled=False,
            tooltip="For a stack of frames of one video: register it and estimate the noise "
            "of the fibre values from each frame against the fusion of the others, instead of "
            "from each frame alone (which overestimates it on fine texture, so the projection "
            "corrects less); see docs/video.md#the-noise-of-a-video. Needs the fibre "
            "consistency, and layers that are stacks of at least 2 frames.",
        )  # fmt: skip
        self.device = ComboBox(
            label="device", choices=["auto", *available_devices()],
            tooltip="Where to run: auto = CUDA, then Apple MPS, then the CPU.",
        )  # fmt: skip
        self.precision = ComboBox(
            label="precision", choices=precision_choices(), value="auto",
            tooltip=PRECISION_HELP,
        )  # fmt: skip
        self.ensemble = ComboBox(
            label="self-ensemble", choices=[str(n) for n in ENSEMBLE_SIZES],
            value=str(DEFAULT_ENSEMBLE),
            tooltip="Run the network on this many quarter turns / mirror images of each frame "
            "and average the results turned back: fewer directional streaks and less noise, "
            "at that many times the network's time (1 = once; 4 = the four quarter turns; "
            "8 adds their mirror images). See docs/pretrained.md#self-ensemble.",
        )  # fmt: skip
        self.tile = SpinBox(
            label="tile (px, 0 = auto)", value=0, min=0, max=8192, step=64,
            tooltip="Process large frames in windows of this size to bound memory.",
        )  # fmt: skip
        self.out_folder = FileEdit(
            label="write results to", mode="d",
            tooltip="Folder for result files. Empty: layers give new layers only; a folder's "
            "images get <name>_sr.tif next to them. Inputs and earlier results are never "
            "overwritten.",
        )  # fmt: skip
        self.run_button = PushButton(text="Super-resolve", tooltip="Start in the background.")
        self.cancel_button = PushButton(
            text="Cancel", tooltip="Stop between two windows; what is finished is kept."
        )
        self.progress = ProgressBar(
            value=0, min=0, max=1, label="progress", tooltip="Windows done."
        )
        self.status = Label(value="", tooltip="What the widget did last.")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.source, self.image, self.layers, self.folder, self.model, self.model_file,
                self.details, self.fibres, self.consistency, self.video_noise, self.device,
                self.precision, self.ensemble, self.tile,
                self.out_folder, self.run_button, self.cancel_button, self.progress, self.status,
            ]
        )  # fmt: skip
        self.finish()
        self.runner = Runner(
            self, viewer, "Super-resolve", progress=self.progress, status=self.status,
            busy_widgets=[self.run_button], cancel_button=self.cancel_button,
        )  # fmt: skip
        self.follower = ActiveLayerFollower(
            viewer, [(self.image, Image, True), (self.fibres, Points, False)]
        )
        self.run_button.changed.connect(self.run)
        self.fibres.changed.connect(self._fibres_changed)
        self.consistency.changed.connect(self._consistency_changed)
        self.source.changed.connect(self._source_changed)
        self.model.changed.connect(self._show_details)
        self.model_file.changed.connect(self._show_details)
        MODELS.changed.connect(self._models_changed)
        self._source_changed()
        self._show_details()

    @property
    def worker(self) -> Any:
        """The running thread worker (None when idle)."""
        return self.runner.worker

    # -- form reactions ------------------------------------------------------------------------
    def _source_changed(self, _value: Any = None) -> None:
        source = self.source.value
        self.image.visible = source == "layer"
        self.layers.visible = source == "layers"
        self.folder.visible = source == "folder"

    def _fibres_changed(self, value: Any = None) -> None:
        # on by default whenever fibres are chosen; meaningless without them
        has_fibres = self.fibres.value is not None
        self.consistency.enabled = has_fibres
        self.consistency.value = has_fibres
        self._consistency_changed()

    def _consistency_changed(self, _value: Any = None) -> None:
        # the noise level is the projection's: meaningless without it
        on = bool(self.consistency.value) and self.fibres.value is not None
        self.video_noise.enabled = on
        if not on:
            self.video_noise.value = False

    def _models_changed(self) -> None:
        try:
            self.model.reset_choices()
            self._show_details()
        except RuntimeError:  # the Qt widget is gone: stop listening
            MODELS.changed.disconnect(self._models_changed)

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return model_choices()

    def _show_details(self, _value: Any = None) -> None:
        """Show what made the chosen model (preset, scale, spacing, data, iterations)."""
        choice = self.model.value
        self.model_file.visible = choice == FROM_FILE
        text = ""
        try:
            if isinstance(choice, Path):
                saved = [m for m in saved_models(choice.parent) if m.path == choice]
                text = saved[0].details if saved else ""
            elif choice == FROM_FILE:
                path = Path(self.model_file.value)
                if path.is_file():
                    from napari_cycsr.io import read_header

                    header = read_header(path)
                    text = model_details(header.get("metadata") or {}, header.get("network"))
            elif isinstance(choice, str) and choice.startswith(PRETRAINED):
                model = self._load(choice, None)
                text = model_details(model.metadata, {"scale": model.scale})
            elif choice is not None:
                model = MODELS.get(choice)
                text = model_details(model.metadata, {"scale": model.scale})
        except (OSError, ValueError, KeyError) as err:
            text = f"cannot read the model: {err}"
        self.details.value = text
        self.details.visible = bool(text)

    # -- running -----------------------------------------------------------------------------
    def _model_label(self, choice: Any, path: Path | None) -> str:
        return choice_label(choice, path)

    def _load(self, choice: Any, path: Path | None) -> Any:
        return load_choice(choice, path)

    def _model_choice(self) -> tuple[Any, Path | None]:
        choice = self.model.value
        if choice is None:
            raise ValueError("choose a model (train one, or pick <model file>)")
        path = None
        if choice == FROM_FILE:
            path = Path(self.model_file.value)
            if not path.is_file():
                raise ValueError(f"choose a model file (.safetensors); {str(path)!r} is no file")
        elif isinstance(choice, Path) and not choice.is_file():
            raise ValueError(f"the saved model {choice} is gone; choose another")
        return choice, path

    def _out_folder(self) -> Path | None:
        value = self.out_folder.value
        if _empty(value):
            return None
        folder = Path(value)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"'write results to' must be a folder; {folder} is a file")
        return folder

    @guarded("Super-resolve")
    def run(self) -> None:
        """Start super-resolving the chosen layer(s) or folder in a worker thread."""
        self.runner.check_free()
        # the inputs are checked first, in the order of the form, then the model
        if self.source.value == "folder":
            self._run_folder()
        else:
            self._run_layers()

    def _layers(self) -> list[Image]:
        if self.source.value == "layer":
            return [require_layer(self.image.value, "the image to super-resolve")]
        layers = list(self.layers.value)
        if not layers:
            raise ValueError("choose the layers to super-resolve (none selected)")
        return [require_layer(layer, "each layer") for layer in layers]

    def _run_layers(self) -> None:
        from napari_cycsr.inference import iter_super_resolve

        layers = self._layers()
        datas = [layer_array(layer, stack=True, what="the image") for layer in layers]
        choice, path = self._model_choice()
        label = self._model_label(choice, path)
        points = self.fibres.value
        bundles = [bundle_from_points(points, layer) if points is not None else None
                   for layer in layers]  # fmt: skip
        project = points is not None and bool(self.consistency.value)
        video_noise = project and bool(self.video_noise.value)
        if video_noise:
            for layer, data in zip(layers, datas):
                if data.ndim != 3 or data.shape[0] < 2:
                    raise ValueError(
                        f"'noise level from the video' needs stacks of at least 2 frames of one "
                        f"video; {layer.name!r} has shape {tuple(data.shape)}: untick it for "
                        "single images"
                    )
        device, tile = self.device.value, self.tile.value or None
        precision, threads = self.precision.value, gui_threads()
        ensemble = int(self.ensemble.value)
        out_folder = self._out_folder()
        name_of = f"SR {label}" + (" + projection" if project else "")
        self._noise_levels: list[str] = []
        targets = None
        if out_folder is not None:
            from napari_cycsr.batch import output_paths

            targets = output_paths([out_folder / f"{layer.name}.tif" for layer in layers])

        def _work() -> Any:
            # a model trained on other fibre spacings runs on frames resampled to its own
            model = self._load(choice, path)
            done = 0
            for i, (layer, data, bundle) in enumerate(zip(layers, datas, bundles)):
                noise: Any = "auto"
                if video_noise:
                    yield Step(0, 1, f"{layer.name}: estimating the noise from the video")
                    noise = _video_noise(data, bundle, layer.name)
                    self._noise_levels.append(f"{layer.name} {noise:.4g}")
                gen = iter_super_resolve(
                    model, data, device=device, tile=tile,
                    mask=None if bundle is None else bundle.fov_mask,
                    bundle=bundle if project else None, project_noise=noise,
                    spacing=None if bundle is None else bundle.spacing, precision=precision,
                    threads=threads, ensemble=ensemble,
                )  # fmt: skip
                result = yield from relay(gen, lambda step, name=layer.name, k=i: Step(
                    step.done, step.total,
                    f"{name} ({k + 1} of {len(layers)}): {step.done} / {step.total} windows",
                ))  # fmt: skip
                if targets is not None:
                    from napari_cycsr._imageio import write_image

                    targets[i].parent.mkdir(parents=True, exist_ok=True)
                    write_image(targets[i], np.asarray(result, dtype=np.float32))
                done += 1
                yield ("result", layer, result, model.scale, noise)
            return done

        def _on_result(event: Any) -> None:
            _, layer, result, scale, noise = event
            self._add_result(layer, result, scale, name_of, label, project, noise, ensemble)

        def _done(count: int) -> None:
            where = f"; files in {out_folder}" if out_folder is not None else ""
            shape, scale = self._last
            size = "x".join(str(int(n)) for n in shape)
            lazy = " (lazy: computed frame by frame as you browse)" if self._lazy else ""
            noise = (
                f"; noise of the fibre values from the video: {', '.join(self._noise_levels)}"
                if self._noise_levels
                else ""
            )
            self.runner.say(
                f"finished: {count} layer(s) super-resolved with {label}, x{scale}, last "
                f"{size}{lazy}{noise}{where}"
            )

        def _cancelled() -> None:
            self.runner.say(
                f"cancelled: {self._added} of {len(layers)} layer(s) finished and added; the "
                "rest was not (no partial layer)"
            )

        self._added = 0
        self.runner.start(
            _work, where="Super-resolve", on_yield=_on_result, on_return=_done,
            on_cancel=_cancelled, total=0,
        )  # fmt: skip

    def _run_folder(self) -> None:
        from napari_cycsr.batch import (
            folder_inputs,
            image_shape,
            iter_super_resolve_files,
            output_paths,
        )

        if _empty(self.folder.value):
            raise ValueError("choose the input folder")
        inputs = folder_inputs(self.folder.value)
        outputs = output_paths(inputs, self._out_folder())
        choice, path = self._model_choice()
        label = self._model_label(choice, path)
        points = self.fibres.value
        bundle = None
        if points is not None:
            ref = bundle_from_points(points, points, _points_shape(points))
            for file in inputs:
                shape = image_shape(file)
                yx = shape[-3:-1] if len(shape) >= 3 and shape[-1] in (3, 4) else shape[-2:]
                if tuple(yx) != tuple(ref.shape):
                    raise ValueError(
                        f"{file.name} is {yx[0]}x{yx[1]} but the fibres {points.name!r} belong "
                        f"to a {ref.shape[0]}x{ref.shape[1]} image: choose a folder of images "
                        "from that bundle, or no fibres"
                    )
            bundle = ref
        project = bundle is not None and bool(self.consistency.value)
        device, tile = self.device.value, self.tile.value or None
        precision, threads = self.precision.value, gui_threads()
        ensemble = int(self.ensemble.value)

        def _work() -> Any:
            model = self._load(choice, path)  # other fibre spacings: resampled to the model's
            gen = iter_super_resolve_files(
                model, inputs, outputs, bundle_for=(lambda _shape: bundle) if bundle else None,
                project=project, device=device, tile=tile,
                spacing=None if bundle is None else bundle.spacing, precision=precision,
                threads=threads, ensemble=ensemble,
            )  # fmt: skip
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    return stop.value
                self._files_done = event.index
                yield Step(
                    event.index * 1000 + (1000 * event.done) // max(event.total, 1),
                    1000 * event.count,
                    f"{event.path.name} ({event.index + 1} of {event.count}): {event.done} / "
                    f"{event.total} windows",
                )

        def _done(written: list[Path]) -> None:
            folders = sorted({str(p.parent) for p in written})
            self.runner.say(
                f"finished: {len(written)} file(s) written ({label}) to {', '.join(folders)}"
            )

        def _cancelled() -> None:
            self.runner.say(
                f"cancelled: {self._files_done} of {len(inputs)} file(s) written; the file in "
                "progress was not written"
            )

        self._files_done = 0
        self.runner.start(
            _work, where="Super-resolve", on_return=_done, on_cancel=_cancelled,
            total=1000 * len(inputs),
        )  # fmt: skip

    def _add_result(
        self,
        layer: Image,
        result: Any,
        scale: int,
        name: str,
        model: str,
        project: bool,
        noise: Any = "auto",
        ensemble: int = 1,
    ) -> None:
        metadata = {
            "cycsr_source": layer.name, "cycsr_model": model, "cycsr_projected": project,
            "cycsr_ensemble": ensemble,  # how many turned copies of the frame were averaged
        }  # fmt: skip
        if project:  # the noise level the projection stopped at ("auto": each frame's own)
            metadata["cycsr_project_noise"] = noise
        self.follower.paused += 1
        try:
            self._viewer.add_image(
                result, name=f"{layer.name} [{name}]",
                contrast_limits=tuple(layer.contrast_limits),
                colormap=layer.colormap if not layer.rgb else "gray",
                metadata=metadata,
                **output_spatial(layer, scale),
            )  # fmt: skip
        finally:
            self.follower.paused -= 1
        self._added += 1
        self._last = (tuple(result.shape), scale)
        self._lazy = not isinstance(result, np.ndarray)

    def cancel(self) -> None:
        """Stop the running job between two batches of windows."""
        self.runner.cancel()


def _video_noise(frames: Any, bundle: Any, name: str) -> float:
    """The noise of a stack's fibre values from its registration (video.estimate_stack_noise)."""
    from napari_cycsr.video import estimate_stack_noise

    try:
        return estimate_stack_noise(frames, bundle)
    except ValueError as err:
        raise ValueError(f"{name}: the noise level from the video: {err}") from None


def _points_shape(points: Points) -> tuple[int, int]:
    """The image size a Points layer's fibres were made for (stored bundle), else their extent."""
    from ._common import BUNDLE_KEY

    cached = points.metadata.get(BUNDLE_KEY)
    if cached is not None:
        return tuple(int(s) for s in cached.shape)
    extent = np.ceil(np.asarray(points.data)[:, -2:].max(axis=0)).astype(int) + 1
    return int(extent[0]), int(extent[1])
