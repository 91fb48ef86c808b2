"""Rate widget: the paper's blinded mean opinion score (MOS) study, run in napari.

The set-up panel (in the viewer holding the data) takes an input layer, an optional reference
layer and two or more result layers (stacks: one case per frame; a folder of images can be
added as a stack layer first), the rater's name, a seed and the answers file. **Start / resume**
opens the study in a window of its own, so the rater sees no layer name: the input, the
reference and the results of one case, the results in a random order under the labels A, B,
C ..., with the paper's four questions for each result (1 = strongly disagree ... 5 = strongly
agree). **Save and next** appends the case's answers to the CSV at once (nothing is lost when
napari closes); starting again on the same file resumes after the last saved case. **Summary**
shows mean ± sd per method and question, paired tests and the bar chart of the paper's Fig. 6.
The study logic is :mod:`napari_cycsr.rating`; this module only shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    Select,
    SpinBox,
)
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image
from qtpy.QtWidgets import QTextBrowser

from napari_cycsr.rating import QUESTIONS, SCORES, SHORT, RatingSession, slot_label

from ._form import Form
from ._layers import ActiveLayerFollower, layer_array, layer_choices, require_layer, yx_shape
from ._plots import theme_axes
from ._worker import guarded

if TYPE_CHECKING:
    import napari

__all__ = ["RateWidget", "RatingForm"]

#: Answer menu: (label, value); 0 = not answered yet.
ANSWERS = [("-", 0), *((f"{k} {v}", k) for k, v in SCORES.items())]


def _frames(data: Any) -> np.ndarray | Any:
    """``(..., H, W)`` -> ``(T, H, W)`` (a 2-D image is one frame)."""
    return data[None] if data.ndim == 2 else data.reshape(-1, *data.shape[-2:])


def _grid(viewer: Any) -> Any:
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def _camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _canvas_size_event(viewer: Any) -> Any:
    """The event emitted when the viewer's canvas changes size (napari 0.5 to 0.9 and later)."""
    canvas = getattr(viewer, "canvas", None)
    if canvas is not None and hasattr(canvas, "events") and hasattr(canvas.events, "size"):
        return canvas.events.size
    return getattr(viewer.events, "_canvas_size", None)


class RatingForm(Form):
    """The study window's panel: the case, four questions per result, Save and next.

    Parameters
    ----------
    study_viewer : napari.viewer.Viewer
        The study's own viewer (shows the images of the case).
    session : RatingSession
        The rater's session (answers file, blinded plan).
    images : dict
        ``"input"``, ``"reference"`` (or None) and ``"results"`` (method -> frames), each
        ``(T, H, W)``; ``scales``: method -> (sy, sx) display scale of the results.
    limits : (float, float)
        Contrast limits of every image (the input's).
    """

    def __init__(
        self, study_viewer: Any, session: RatingSession, images: dict[str, Any], limits: Any
    ) -> None:
        super().__init__()
        self._viewer = study_viewer
        self.session = session
        self.images = images
        self.limits = tuple(float(v) for v in limits)
        self.case: Any = None
        self.heading = Label(value="", tooltip="Your progress through the study.")
        self.heading.native.setWordWrap(True)
        self.questions = Label(
            value="\n".join(f"{q}: {text}" for q, text in QUESTIONS.items())
            + "\n1 = strongly disagree ... 5 = strongly agree",
            tooltip="The questions of the paper's study (Section 4.2), for each image A, B ...",
        )  # fmt: skip
        self.questions.native.setWordWrap(True)
        n = len(session.methods)
        self.scores: dict[str, dict[str, ComboBox]] = {}
        groups = []
        for i in range(n):
            slot = slot_label(i)
            menus = {
                q: ComboBox(
                    label=f"{q} {SHORT[q]}", choices=ANSWERS, value=0,
                    tooltip=f"Image {slot} - {q}: {QUESTIONS[q]}",
                )  # fmt: skip
                for q in QUESTIONS
            }
            self.scores[slot] = menus
            title = Label(value=f"<b>image {slot}</b>", tooltip=f"Your answers for image {slot}.")
            groups += [title, *menus.values()]
        self.save_button = PushButton(
            text="Save and next",
            tooltip="Write this case's answers to the answers file and show the next case.",
        )
        self.status = Label(value="", tooltip="Last action.")
        self.status.native.setWordWrap(True)
        self.extend([self.heading, self.questions, *groups, self.save_button, self.status])
        self.finish()
        self.save_button.changed.connect(self.save)
        self._layers: dict[str, Any] = {}
        self._fitted: Any = None  # the camera as the last fit left it
        size_event = _canvas_size_event(study_viewer)
        if size_event is not None:
            size_event.connect(self._refit)
        self.show_case(session.next_case())

    def _layer(self, name: str, frame: np.ndarray, scale: Any = (1.0, 1.0)) -> None:
        if name in self._layers and self._layers[name] in self._viewer.layers:
            layer = self._layers[name]
            layer.data = frame
        else:
            self._layers[name] = self._viewer.add_image(
                frame, name=name, contrast_limits=self.limits, scale=tuple(scale)
            )

    def _camera_state(self) -> tuple:
        camera = _camera(self._viewer)
        return float(camera.zoom), tuple(float(c) for c in camera.center)

    def fit_view(self) -> None:
        """Fit every image of the case into its own cell of the grid."""
        self._viewer.reset_view()
        self._fitted = self._camera_state()

    def _refit(self, event: Any = None) -> None:
        """The canvas changed size (the form docked, the window resized): fit the images
        again, unless the rater has zoomed or panned since the last fit. A fit made for the
        canvas before the form was docked beside it shows each image wider than its cell."""
        if self._fitted is not None and self._camera_state() == self._fitted:
            self.fit_view()

    def show_case(self, case: Any) -> None:
        """Show the images of ``case`` (None: the study is finished)."""
        self.case = case
        for menus in self.scores.values():
            for menu in menus.values():
                menu.value = 0
        if case is None:
            self.heading.value = (
                f"finished: all {self.session.total} cases rated by {self.session.rater}; "
                f"answers in {self.session.path.name}. Thank you!"
            )
            self.save_button.enabled = False
            return
        index = self.session.cases.index(case.case)
        self.heading.value = (
            f"case {self.session.done + 1} of {self.session.total} (rater {self.session.rater})"
        )
        self._layer("input", np.asarray(self.images["input"][index], dtype=np.float32))
        if self.images["reference"] is not None:
            self._layer("reference", np.asarray(self.images["reference"][index], np.float32))
        for slot, method in case.slots.items():
            frames = self.images["results"][method]
            self._layer(slot, np.asarray(frames[index], np.float32), self.images["scales"][method])
        first_case = not _grid(self._viewer).enabled
        _grid(self._viewer).enabled = True
        if first_case:
            self.fit_view()
        self.save_button.enabled = True

    def answers(self) -> dict[str, dict[str, int]]:
        """The answers given on the form: slot -> question -> score (0 = none)."""
        return {
            slot: {q: int(menu.value) for q, menu in menus.items()}
            for slot, menus in self.scores.items()
        }

    @guarded("Rate")
    def save(self) -> None:
        """Append the case's answers to the CSV (all four questions for every image)."""
        if self.case is None:
            return
        self.session.answer(self.case, self.answers())
        self.status.value = f"saved case {self.session.done} of {self.session.total}"
        self.show_case(self.session.next_case())


class RateWidget(Form):
    """Set up and run the blinded rating study, then summarise its answers.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer holding the input, reference and result layers.
    """

    #: How the study window is made (tests replace it by napari's ``make_napari_viewer``).
    viewer_factory: Callable[[], Any] | None = None

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.study_viewer: Any = None
        self.form: RatingForm | None = None
        images = layer_choices(viewer, Image)
        self.input = ComboBox(
            label="input", choices=images,
            tooltip="The input the results were made from (e.g. the TLI image), shown beside "
            "them. A stack gives one case per frame.",
        )  # fmt: skip
        self.reference = ComboBox(
            label="reference", choices=images, nullable=True, value=None,
            tooltip="Optional: a reference shown beside the results (the paper shows HR^, "
            "the image fused from the video).",
        )  # fmt: skip
        self.results = Select(
            label="results", choices=images,
            tooltip="Two or more results to compare (Ctrl/Cmd-click), each with the input's "
            "number of frames. Their names are hidden from the rater.",
        )  # fmt: skip
        self.results.native.setMaximumHeight(90)
        self.folder = FileEdit(
            label="folder", mode="d",
            tooltip="A folder of images (all of one size) to add as a stack layer, e.g. "
            "results saved by another program; then choose it above.",
        )  # fmt: skip
        self.folder_button = PushButton(
            text="Add folder as a layer",
            tooltip="Read the folder's images (sorted by name) into one stack layer.",
        )
        self.rater = LineEdit(
            label="rater", value="", tooltip="Your name: keeps each rater's answers apart."
        )
        self.seed = SpinBox(
            label="seed", value=0, min=0, max=2**31 - 1,
            tooltip="Seed of the blinded random order (cases and results); resuming needs the "
            "same seed.",
        )  # fmt: skip
        self.answers_file = FileEdit(
            label="answers file", mode="w", filter="*.csv",
            tooltip="CSV file the answers are appended to as they are given; an existing file "
            "resumes your unfinished session.",
        )  # fmt: skip
        self.start_button = PushButton(
            text="Start / resume the study",
            tooltip="Open the study window (blinded) at your first unanswered case.",
        )
        self.summary_button = PushButton(
            text="Summary", tooltip="Mean ± sd per method and question, paired tests, chart."
        )
        self.status = Label(value="", tooltip="What the widget did last.")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.input, self.reference, self.results, self.folder, self.folder_button,
                self.rater, self.seed, self.answers_file, self.start_button,
                self.summary_button, self.status,
            ]
        )  # fmt: skip
        self.summary = QTextBrowser()
        self.summary.setMinimumHeight(120)
        self.summary.setToolTip("The study's results so far (all raters in the answers file).")
        self.add_qt(self.summary)
        self.figure = Figure(figsize=(4, 2.6), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        self.canvas.setToolTip("Mean ± sd per question and method (the paper's Fig. 6).")
        self.add_qt(self.canvas)
        self.finish()
        self.follower = ActiveLayerFollower(viewer, [(self.input, Image, False)])
        self.folder_button.changed.connect(self.add_folder)
        self.start_button.changed.connect(self.start)
        self.summary_button.changed.connect(self.show_summary)

    def _path(self) -> Path:
        value = str(self.answers_file.value)
        if value in ("", "."):
            raise ValueError("choose the answers file (.csv)")
        path = Path(value)
        if path.suffix.lower() != ".csv":
            raise ValueError(f"the answers file must end in .csv, got {path.name!r}")
        return path

    @guarded("Add folder")
    def add_folder(self) -> Any:
        """Read a folder of same-sized images into one (T, H, W) layer."""
        from napari_cycsr._imageio import find_images, read_image

        value = str(self.folder.value)
        if value in ("", ".") or not Path(value).is_dir():
            raise ValueError(f"choose a folder of images ({value!r} is none)")
        files = find_images([value])
        frames = [np.asarray(read_image(p), dtype=np.float32) for p in files]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1 or frames[0].ndim != 2:
            raise ValueError(
                f"{value}: the images must be 2-D and of one size to make a stack; found "
                f"{sorted(shapes)}"
            )
        return self._viewer.add_image(np.stack(frames), name=Path(value).name)

    @guarded("Rate")
    def start(self) -> None:
        """Check the inputs, open (or resume) the rater's session in the study window."""
        input_layer = require_layer(self.input.value, "the input layer")
        results = list(self.results.value)
        if len(results) < 2:
            raise ValueError("choose two or more result layers to compare")
        if input_layer in results or self.reference.value in results:
            raise ValueError("the input and the reference cannot also be results")
        names = [layer.name for layer in results]
        source = _frames(layer_array(input_layer, stack=True, what="the input"))
        n = source.shape[0]
        shape = yx_shape(input_layer)
        reference = None
        if self.reference.value is not None:
            ref_layer = require_layer(self.reference.value, "the reference layer")
            reference = _frames(layer_array(ref_layer, stack=True, what="the reference"))
            if reference.shape[0] not in (1, n):
                raise ValueError(
                    f"the reference {ref_layer.name!r} has {reference.shape[0]} frames, the "
                    f"input {n}: give one reference frame or one per input frame"
                )
            if reference.shape[0] == 1 and n > 1:
                reference = np.repeat(reference, n, axis=0)
        frames, scales = {}, {}
        for layer in results:
            data = _frames(layer_array(layer, stack=True, what="the result"))
            if data.shape[0] != n:
                raise ValueError(
                    f"the result {layer.name!r} has {data.shape[0]} frame(s), the input {n}: "
                    "every result needs one frame per input frame"
                )
            frames[layer.name] = data
            scales[layer.name] = (shape[0] / data.shape[-2], shape[1] / data.shape[-1])
        cases = [f"frame {t + 1}" for t in range(n)] if n > 1 else ["image"]
        session = RatingSession(
            self._path(), names, cases, rater=self.rater.value, seed=int(self.seed.value)
        )
        if session.finished:
            self.status.value = (
                f"{session.rater} has rated all {session.total} cases in {session.path.name}"
            )
            return
        images = {"input": source, "reference": reference, "results": frames, "scales": scales}
        limits = tuple(input_layer.contrast_limits)
        self._open(session, images, limits)
        self.status.value = (
            f"study open in its own window: {session.total} cases, {session.done} done "
            f"({session.rater}, seed {session.seed})"
        )

    def _open(self, session: RatingSession, images: dict[str, Any], limits: Any) -> None:
        if self.study_viewer is not None:
            try:
                self.study_viewer.close()
            except (RuntimeError, AttributeError):
                pass
        factory = self.viewer_factory
        if factory is None:
            import napari

            def factory() -> Any:
                return napari.Viewer(title="CycSR rating study")

        self.study_viewer = factory()
        self.form = RatingForm(self.study_viewer, session, images, limits)
        dock = self.study_viewer.window.add_dock_widget(self.form, name="Rate", area="right")
        dock.setMaximumWidth(420)

    @guarded("Summary")
    def show_summary(self) -> str:
        """Show the answers file's summary table, paired tests and bar chart."""
        from napari_cycsr.rating import format_summary, plot_summary, read_answers

        path = self._path()
        if not path.is_file():
            raise ValueError(f"no answers yet: {path} does not exist")
        answers = read_answers(path)
        chosen = [layer.name for layer in self.results.value]
        answered = {a.method for a in answers}
        methods = chosen if chosen and answered <= set(chosen) else None  # the user's order
        text = format_summary(answers, methods=methods)
        self.summary.setMarkdown(text)
        self.figure.clear()
        axes = self.figure.add_subplot()
        plot_summary(answers, methods=methods, ax=axes)
        theme_axes(self.figure, axes, self._viewer.theme, axes.get_legend())
        self.canvas.draw_idle()
        self.status.value = f"{len(answers)} answers in {path.name}"
        return text
