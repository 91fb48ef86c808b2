"""Video widget: register a (T, Y, X) pCLE layer, fuse its frames (HR^), sliding windows,
mosaics and leave-one-out references; every job in the background (one at a time) with
progress and Cancel.

The widget holds no algorithm: each button calls :mod:`napari_cycsr.video`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Label, ProgressBar, PushButton, SpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image, Points

from napari_cycsr._progress import relay

from ._common import bundle_from_points, output_spatial, robust_limits
from ._form import Form
from ._layers import ActiveLayerFollower, GreyButton, layer_array, layer_choices, require_layer
from ._worker import Runner, Step, guarded

if TYPE_CHECKING:
    import napari

__all__ = ["REGISTRATION_KEY", "ShiftPlot", "VideoWidget"]

#: Metadata key under which a video layer keeps its last Registration.
REGISTRATION_KEY = "cycsr_registration"


class ShiftPlot(FigureCanvasQTAgg):
    """Shifts (dy, dx) and confidence per frame; frames left out are marked with a red x."""

    def __init__(self, theme: str = "dark") -> None:
        self.figure = Figure(figsize=(4, 2.4))
        self.figure.subplots_adjust(left=0.16, right=0.86, top=0.95, bottom=0.2)
        super().__init__(self.figure)
        self.setMinimumHeight(160)
        self.axes = self.figure.add_subplot()
        self.conf_axes = self.axes.twinx()
        self.theme = theme
        self.apply_theme(theme)

    def apply_theme(self, theme: str) -> None:
        from napari.utils.theme import get_theme

        colours = get_theme(theme)
        self._fg = colours.text.as_hex()
        self.figure.set_facecolor(colours.background.as_hex())
        self.axes.set_facecolor(colours.canvas.as_hex())
        for ax in (self.axes, self.conf_axes):
            for spine in ax.spines.values():
                spine.set_color(self._fg)
            ax.tick_params(colors=self._fg, which="both")
            ax.xaxis.label.set_color(self._fg)
            ax.yaxis.label.set_color(self._fg)
        self.draw_idle()

    def show_registration(self, reg: Any) -> None:
        """Draw ``reg.shifts`` and ``reg.confidence`` against the frame index."""
        self.axes.clear()
        self.conf_axes.clear()
        t = np.arange(reg.n_frames)
        self.axes.plot(t, reg.shifts[:, 0], "-o", ms=3, label="dy")
        self.axes.plot(t, reg.shifts[:, 1], "-o", ms=3, label="dx")
        bad = ~reg.good
        if bad.any():
            self.axes.plot(t[bad], reg.shifts[bad, 0], "x", color="red", ms=8, label="left out")
            self.axes.plot(t[bad], reg.shifts[bad, 1], "x", color="red", ms=8)
        self.conf_axes.plot(t, reg.confidence, ":", color="grey", label="confidence")
        self.conf_axes.axhline(reg.min_confidence, color="red", lw=0.5, ls="--")
        self.conf_axes.set_ylim(0, 1.05)
        self.conf_axes.yaxis.set_label_position("right")  # clear() moved it to the left
        self.conf_axes.yaxis.tick_right()
        self.conf_axes.set_ylabel("confidence")
        self.axes.set_xlabel("frame")
        self.axes.set_ylabel("shift (px)")
        legend = self.axes.legend(loc="upper left", fontsize="small", frameon=False)
        for text in legend.get_texts():
            text.set_color(self._fg)
        self.apply_theme(self.theme)
        self.draw()


class VideoWidget(Form):
    """Register the frames of a pCLE video and fuse them into sharper images.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the widget reads and adds to.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.registration: Any = None
        self._registered_layer: Any = None
        images = layer_choices(viewer, Image)
        self.video = ComboBox(
            label="video (T, Y, X)", choices=images,
            tooltip="The stack of frames to register and fuse. Follows the layer you select.",
        )  # fmt: skip
        self.fibres = ComboBox(
            label="fibres", choices=layer_choices(viewer, Points), nullable=True, value=None,
            tooltip="The fibre centres (Fibres widget). Without them the video is registered as "
            "it is, and fusion estimates the cores from the video itself.",
        )  # fmt: skip
        self.background = ComboBox(
            label="background", choices=images, nullable=True, value=None,
            tooltip="Flat-field frame, for raw camera frames.",
        )  # fmt: skip
        self.grey = GreyButton(viewer, [self.video, self.background])
        self.reference = SpinBox(label="reference frame", value=0, min=0, max=100_000)
        self.rotation = CheckBox(text="also estimate rotation", value=False)
        self.register_button = PushButton(text="Register")
        self.plot = ShiftPlot(getattr(viewer, "theme", "dark"))
        self.scale = ComboBox(label="output scale", choices=[1, 2], value=1)
        self.method = ComboBox(
            label="fusion", choices=["solve", "mean"], value="solve",
            tooltip="solve: least squares on every frame's core values (sharpest); "
            "mean: shift-and-add of the frames' TLI images (fast).",
        )  # fmt: skip
        self.fuse_button = PushButton(text="Fuse HR^ (reference frame)")
        self.window = SpinBox(label="frames per window", value=8, min=1, max=1000)
        self.video_button = PushButton(text="Sliding-window HR^ video")
        self.mosaic_button = PushButton(text="Mosaic")
        self.loo_button = PushButton(text="Leave-one-out reference for the current frame")
        self.cancel_button = PushButton(text="Cancel", tooltip="Stop the job at its next step.")
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.video, self.fibres, self.background, self.grey, self.reference,
                self.rotation, self.register_button, self.scale, self.method, self.fuse_button,
                self.window, self.video_button, self.mosaic_button, self.loo_button,
                self.cancel_button, self.progress, self.status,
            ]
        )  # fmt: skip
        self.add_qt(self.plot, self.layout_index(self.register_button) + 1)
        self.finish()
        self._buttons = [
            self.register_button, self.fuse_button, self.video_button, self.mosaic_button,
            self.loo_button,
        ]  # fmt: skip
        self.register_button.changed.connect(self.register)
        self.fuse_button.changed.connect(self.fuse)
        self.video_button.changed.connect(self.fuse_video)
        self.mosaic_button.changed.connect(self.mosaic)
        self.loo_button.changed.connect(self.leave_one_out)
        self.runner = Runner(
            self, viewer, "Video", progress=self.progress, status=self.status,
            busy_widgets=self._buttons, cancel_button=self.cancel_button,
        )  # fmt: skip
        self.follower = ActiveLayerFollower(viewer, [(self.video, Image, False)])

    @property
    def worker(self) -> Any:
        """The running thread worker (None when idle)."""
        return self.runner.worker

    # -- plumbing ------------------------------------------------------------------------
    def _start(self, func: Any, *, where: str, on_return: Any) -> None:
        """Run ``func`` (a generator of the library's progress events) in the Runner."""
        self.runner.check_free()

        def _job() -> Any:
            return (yield from relay(func(), lambda event: Step(
                int(event.done), int(event.total),
                f"{where}: {event.stage} {event.done} / {event.total}",
            )))  # fmt: skip

        self.runner.start(_job, where=where, on_return=on_return)

    def stop(self) -> None:
        """Stop the running job at its next step; no layer is added."""
        self.runner.cancel()

    def _inputs(self) -> tuple[Image, Any, Any, Any]:
        layer = require_layer(self.video.value, "the video layer")
        data = layer_array(layer, stack=True, what="the video layer")
        if data.ndim != 3:
            raise ValueError(
                f"the video layer {layer.name!r} has shape {tuple(data.shape)}; expected a "
                "stack of frames (T, Y, X)"
            )
        if data.shape[0] < 2:
            raise ValueError(f"the video layer {layer.name!r} holds one frame; need at least 2")
        bundle = None
        if self.fibres.value is not None:
            bundle = bundle_from_points(self.fibres.value, layer)
        background = None
        if self.background.value is not None:
            bg_layer = require_layer(self.background.value, "the background")
            background = np.asarray(layer_array(bg_layer, self._viewer, what="the background"))
            if background.shape != tuple(data.shape[-2:]):
                raise ValueError(
                    f"background {bg_layer.name!r} is {background.shape}, the frames are "
                    f"{tuple(data.shape[-2:])}; they must have the same height and width"
                )
        return layer, data, bundle, background

    def _registration_for(self, layer: Image) -> Any:
        reg = layer.metadata.get(REGISTRATION_KEY)
        if reg is None:
            raise ValueError(f"register {layer.name!r} first (the Register button)")
        if reg.n_frames != layer.data.shape[0]:
            raise ValueError(
                f"the registration has {reg.n_frames} frames but {layer.name!r} now has "
                f"{layer.data.shape[0]}; register it again"
            )
        return reg

    def _values(self, data: Any, bundle: Any, background: Any) -> tuple[Any, Any]:
        """(fibre values or frames, bundle) in the worker thread: the bundle may be estimated."""
        from napari_cycsr.video import estimate_lattice, frame_values

        if bundle is None:
            bundle = estimate_lattice(data)
        return frame_values(data, bundle, background=background), bundle

    # -- actions ---------------------------------------------------------------------------
    @guarded("Register")
    def register(self) -> None:
        """Register every frame to the reference frame; plot the shifts and confidence."""
        from napari_cycsr.video import iter_register

        layer, data, bundle, background = self._inputs()
        reference = int(self.reference.value)
        if reference >= data.shape[0]:
            raise ValueError(f"reference frame {reference} >= the {data.shape[0]} frames")
        rotation = bool(self.rotation.value)

        def _work() -> Any:
            return (
                yield from iter_register(
                    data, bundle, reference=reference, rotation=rotation, background=background
                )
            )

        def _done(reg: Any) -> None:
            layer.metadata[REGISTRATION_KEY] = reg
            self.registration = reg
            self.plot.show_registration(reg)
            bad = np.flatnonzero(~reg.good).tolist()
            left = f"; left out (low confidence): {bad}" if bad else ""
            self.status.value = (
                f"registered {reg.n_frames} frames to frame {reg.reference}: "
                f"{int(reg.good.sum())} good, shifts up to "
                f"{np.abs(reg.shifts).max():.1f} px{left}"
            )

        self._start(_work, where="Register", on_return=_done)

    def _fuse_job(self, frame: int, *, exclude: Any = None, name: str) -> None:
        from napari_cycsr.video import iter_fuse

        layer, data, bundle, background = self._inputs()
        reg = self._registration_for(layer)
        if not reg.good[frame]:
            raise ValueError(
                f"frame {frame} was left out by the registration (confidence "
                f"{reg.confidence[frame]:.2f}); choose another frame"
            )
        scale = int(self.scale.value)
        method = self.method.value

        def _work() -> Any:
            values, fibres = self._values(data, bundle, background)
            image, info = yield from iter_fuse(
                values, fibres, reg, reference=frame, scale=scale, method=method,
                exclude=exclude, return_info=True,
            )  # fmt: skip
            return image, info

        def _done(value: Any) -> None:
            image, info = value
            self._viewer.add_image(
                image, name=name, contrast_limits=robust_limits(image),
                metadata={"fusion": info}, **output_spatial(layer, scale, ndim=2),
            )  # fmt: skip
            self.status.value = (
                f"{name}: {len(info.frames)} frames fused ({info.iterations} iterations, "
                f"stopped by {info.stopped_by}); left out: {list(info.left_out) or 'none'}"
            )

        self._start(_work, where="Fuse", on_return=_done)

    @guarded("Fuse")
    def fuse(self) -> None:
        """HR^ on the reference frame's grid from every good frame."""
        layer = require_layer(self.video.value, "the video layer")
        frame = int(self.reference.value)
        if frame >= layer.data.shape[0]:
            raise ValueError(f"reference frame {frame} >= the {layer.data.shape[0]} frames")
        self._fuse_job(frame, name=f"{layer.name} HR^ (frame {frame})")

    @guarded("Leave-one-out")
    def leave_one_out(self) -> None:
        """HR^ for the frame shown in the viewer, fused from the *other* frames only."""
        layer = require_layer(self.video.value, "the video layer")
        step = self._viewer.dims.current_step
        frame = int(np.clip(step[len(step) - layer.ndim], 0, layer.data.shape[0] - 1))
        self._fuse_job(frame, exclude=[frame], name=f"{layer.name} HR^ without frame {frame}")

    @guarded("Sliding-window HR^")
    def fuse_video(self) -> None:
        """Each frame fused from its nearest ``frames per window`` good frames."""
        from napari_cycsr.video import iter_fuse_video

        layer, data, bundle, background = self._inputs()
        reg = self._registration_for(layer)
        scale = int(self.scale.value)
        method = self.method.value
        window = int(self.window.value)

        def _work() -> Any:
            values, fibres = self._values(data, bundle, background)
            return (
                yield from iter_fuse_video(
                    values, fibres, reg, window=window, scale=scale, method=method
                )
            )

        def _done(stack: np.ndarray) -> None:
            name = f"{layer.name} HR^ video (window {window})"
            self._viewer.add_image(
                stack, name=name, contrast_limits=robust_limits(stack[reg.reference]),
                **output_spatial(layer, scale, ndim=3),
            )  # fmt: skip
            self.status.value = f"{name}: {stack.shape[0]} frames"

        self._start(_work, where="Sliding-window HR^", on_return=_done)

    @guarded("Mosaic")
    def mosaic(self) -> None:
        """One canvas covering every good frame, placed where the reference frame sits."""
        from napari_cycsr.video import iter_fuse

        layer, data, bundle, background = self._inputs()
        reg = self._registration_for(layer)
        scale = int(self.scale.value)
        method = self.method.value

        def _work() -> Any:
            values, fibres = self._values(data, bundle, background)
            return (
                yield from iter_fuse(
                    values, fibres, reg, reference=reg.reference, scale=scale, method=method,
                    canvas="mosaic", return_info=True,
                )
            )  # fmt: skip

        def _done(value: Any) -> None:
            image, info = value
            spatial = output_spatial(layer, scale, ndim=2)
            layer_scale = np.asarray(layer.scale[-2:], float)
            # info.origin: reference-frame pixel coordinates of canvas pixel (0, 0)
            translate = np.asarray(layer.translate[-2:], float) + layer_scale * np.asarray(
                info.origin
            )
            spatial["translate"] = tuple(translate)
            self._viewer.add_image(
                image, name=f"{layer.name} mosaic", contrast_limits=robust_limits(image),
                metadata={"fusion": info}, **spatial,
            )  # fmt: skip
            self.status.value = (
                f"mosaic {image.shape[0]}x{image.shape[1]} from {len(info.frames)} frames"
            )

        self._start(_work, where="Mosaic", on_return=_done)
