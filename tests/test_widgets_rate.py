"""Qt tests of the Rate widget: the paper's blinded MOS study run in napari."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_cycsr.rating import QUESTIONS, read_answers  # noqa: E402

pytestmark = pytest.mark.qt


@pytest.fixture
def study(make_napari_viewer, tmp_path):
    """A viewer with an input stack (3 frames), a reference and three results."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    base = rng.random((3, 24, 24)).astype(np.float32)
    viewer.add_image(base, name="TLI")
    viewer.add_image(base + 0.1, name="HR^")
    for name, shift in (("sharpen", 0.2), ("video SR", 0.3), ("CycSR", 0.4)):
        viewer.add_image(base + shift, name=name)
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Rate")
    widget.viewer_factory = make_napari_viewer  # the study window, closed by the fixture
    widget.input.value = viewer.layers["TLI"]
    widget.reference.value = viewer.layers["HR^"]
    widget.results.value = [viewer.layers[n] for n in ("sharpen", "video SR", "CycSR")]
    widget.rater.value = "ann"
    widget.seed.value = 7
    widget.answers_file.value = tmp_path / "answers.csv"
    return viewer, widget, tmp_path / "answers.csv"


def _answer(form, scores):
    """Fill the form: scores is slot -> value for every question."""
    for slot, menus in form.scores.items():
        for menu in menus.values():
            menu.value = scores[slot]
    form.save_button.native.click()


def test_blinded_case_by_case_saved_at_once_and_resumed(study, qtbot, errors):
    viewer, widget, path = study
    widget.start_button.native.click()
    assert errors == []
    form, study_viewer = widget.form, widget.study_viewer
    assert study_viewer is not viewer
    # blinded: the study window shows no result name, only neutral labels
    names = [layer.name for layer in study_viewer.layers]
    assert names == ["input", "reference", "A", "B", "C"]
    from napari_cycsr._widgets.rate import _grid

    assert _grid(study_viewer).enabled
    case = form.case
    frame = int(case.case.split()[-1]) - 1
    for slot, method in case.slots.items():
        expected = viewer.layers[method].data[frame]
        np.testing.assert_array_equal(study_viewer.layers[slot].data, expected)
    assert tuple(study_viewer.layers["A"].contrast_limits) == tuple(
        viewer.layers["TLI"].contrast_limits
    )
    assert "case 1 of 3" in form.heading.value

    # an incomplete answer is refused, nothing is written
    form.save_button.native.click()
    assert "answer Q1" in errors[-1] and not path.exists()
    # answering: the CSV holds the case's three rows at once, with the order shown
    _answer(form, {"A": 4, "B": 3, "C": 5})
    rows = read_answers(path)
    assert len(rows) == 3 and {r.case for r in rows} == {case.case}
    assert {r.slot: r.method for r in rows} == case.slots
    assert all(r.scores == dict.fromkeys(QUESTIONS, {"A": 4, "B": 3, "C": 5}[r.slot])
               for r in rows)  # fmt: skip
    assert "case 2 of 3" in form.heading.value and form.case != case

    # napari closes mid-study; a new session on the same file resumes at case 2
    study_viewer.close()
    widget.start_button.native.click()
    assert errors[1:] == []
    assert widget.form.case.case != case.case and "case 2 of 3" in widget.form.heading.value
    _answer(widget.form, {"A": 2, "B": 2, "C": 3})
    _answer(widget.form, {"A": 1, "B": 5, "C": 4})
    assert widget.form.case is None and "finished" in widget.form.heading.value
    assert len(read_answers(path)) == 9

    # summary: mean ± sd per method and question, tests, and the Fig. 6 bar chart
    text = widget.show_summary()
    assert "| method | n | Q1 artefact-free" in text and "Wilcoxon" in text
    for name in ("sharpen", "video SR", "CycSR"):
        assert f"| {name} | 3 |" in text
    assert len(widget.figure.axes[0].patches) == 4 * 3
    assert "9 answers" in widget.status.value
    # starting again: this rater is done
    widget.start_button.native.click()
    assert "has rated all 3 cases" in widget.status.value


def test_bad_study_inputs(study, qtbot, errors):
    viewer, widget, path = study
    widget.results.value = [viewer.layers["sharpen"]]
    widget.start_button.native.click()
    assert "two or more result layers" in errors[-1]
    viewer.add_image(np.zeros((2, 24, 24), np.float32), name="short")
    widget.results.value = [viewer.layers["sharpen"], viewer.layers["short"]]
    widget.start_button.native.click()
    assert "'short' has 2 frame(s), the input 3" in errors[-1]
    widget.results.value = [viewer.layers["sharpen"], viewer.layers["CycSR"]]
    widget.rater.value = ""
    widget.start_button.native.click()
    assert "rater's name" in errors[-1]
    assert widget.study_viewer is None and not path.exists()


def test_folder_of_images_becomes_a_stack_layer(study, qtbot, errors, tmp_path):
    from napari_cycsr._imageio import write_image

    viewer, widget, _ = study
    folder = tmp_path / "other method"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"{i}.tif", np.full((24, 24), i, np.float32))
    widget.folder.value = folder
    widget.folder_button.native.click()
    assert errors == []
    layer = viewer.layers["other method"]
    assert layer.data.shape == (3, 24, 24) and layer.data[2, 0, 0] == 2


def _on_screen(study_viewer) -> np.ndarray:
    """Largest (height, width) in canvas pixels of the study's images at the camera's zoom."""
    zoom = study_viewer.scene.camera.zoom
    return np.max([np.diff(layer.extent.world[:, -2:], axis=0)[0] + 1 for layer in
                   study_viewer.layers], axis=0) * zoom  # fmt: skip


def test_study_images_each_fit_their_grid_cell(make_napari_viewer, qtbot, tmp_path):
    """The study window shows every image whole in its cell: fitted after the form is docked
    beside the canvas, again when the window is resized, not after the rater has zoomed."""
    viewer = make_napari_viewer()
    frames = np.random.default_rng(1).random((2, 128, 128)).astype(np.float32)
    for name in ("TLI", "HR^", "sharpen", "CycSR", "video SR"):
        viewer.add_image(frames, name=name)
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Rate")

    def factory():
        study = make_napari_viewer(show=True)
        study.window._qt_window.resize(1200, 760)
        return study

    widget.viewer_factory = factory
    widget.input.value = viewer.layers["TLI"]
    widget.reference.value = viewer.layers["HR^"]
    widget.results.value = [viewer.layers[n] for n in ("sharpen", "CycSR", "video SR")]
    widget.rater.value = "ann"
    widget.answers_file.value = tmp_path / "answers.csv"
    widget.start_button.native.click()
    study = widget.study_viewer
    native = study.window._qt_viewer.canvas.native

    def settled():  # the canvas model has the size of the canvas as drawn
        return tuple(study.canvas.size) == (native.height(), native.width())

    qtbot.waitUntil(settled)
    cell = np.asarray(study.canvas.viewbox_size(study.layers))
    assert study.canvas.grid.enabled and len(study.layers) == 5
    assert np.all(_on_screen(study) <= cell), (_on_screen(study), cell)
    # the window grows taller and narrower: fitted again
    study.window._qt_window.resize(900, 1000)
    qtbot.waitUntil(lambda: settled() and tuple(study.canvas.size) != tuple(cell))
    cell = np.asarray(study.canvas.viewbox_size(study.layers))
    assert np.all(_on_screen(study) <= cell) and np.any(_on_screen(study) >= 0.9 * cell)
    # the rater zooms in: a resize keeps the rater's view
    study.scene.camera.zoom *= 3
    zoom = study.scene.camera.zoom
    study.window._qt_window.resize(1100, 800)
    qtbot.waitUntil(settled)
    qtbot.wait(50)
    assert study.scene.camera.zoom == zoom


def test_study_form_label_column_fits_its_widest_label(study, make_napari_viewer, qtbot):
    """Every answer menu starts at the same x and no question label is cut off, at the
    dock's width and at its narrowest (magicgui measures labels in the default font, napari
    draws them larger)."""
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtWidgets import QDockWidget

    viewer, widget, _ = study
    widget.viewer_factory = lambda: make_napari_viewer(show=True)  # napari's style applies
    widget.start_button.native.click()
    form, window = widget.form, widget.study_viewer.window._qt_window
    qtbot.waitUntil(form.body.isVisible)
    (dock,) = [d for d in window.findChildren(QDockWidget) if d.isAncestorOf(form.native)]
    for width in (dock.width(), 1):
        window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
        qtbot.wait(50)
        menus = [m.native for slot in form.scores.values() for m in slot.values()]
        starts = {m.mapTo(form.body, QPoint(0, 0)).x() for m in menus}
        assert len(starts) == 1, (width, starts)
        for menu in form.scores["A"].values():
            label = menu._labeled_widget()._label_widget.native
            assert label.width() >= label.sizeHint().width(), (width, label.text())
            assert label.geometry().right() < menu.native.geometry().left()
