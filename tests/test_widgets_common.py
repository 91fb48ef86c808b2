"""Qt tests of what every napari-cycsr widget shares: fit on a laptop screen, tooltips,
menus that follow the selected layer, napari's progress bar inside napari."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from magicgui.widgets import Label, ProgressBar  # noqa: E402

pytestmark = pytest.mark.qt

WIDGETS = ("Fibres", "Train", "Super-resolve", "Evaluate", "Rate")


def test_all_docks_fit_a_1366x768_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    manifest = __import__("npe2").PluginManager.instance().get_manifest("napari-cycsr")
    for widget in manifest.contributions.widgets:  # every widget of the plugin, docked
        viewer.window.add_plugin_dock_widget("napari-cycsr", widget.display_name)
    qtbot.wait(50)
    hint = viewer.window._qt_window.minimumSizeHint()
    assert hint.height() <= 768 and hint.width() <= 1366, (hint.width(), hint.height())


def test_every_control_has_a_tooltip(make_napari_viewer):
    from napari_cycsr._widgets._form import controls

    viewer = make_napari_viewer()
    for name in WIDGETS:
        _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", name)
        missing = [
            f"{name}: {getattr(control, 'label', '') or getattr(control, 'text', '')!r}"
            for control in controls(widget)
            if not (control.tooltip or "").strip()
        ]
        assert missing == []
        assert all(isinstance(c, Label | ProgressBar) or c.tooltip for c in controls(widget))
    form = viewer.window.add_plugin_dock_widget("napari-cycsr", "Train")[1].form
    assert form.collapsible.toolTip()


def test_each_main_menu_follows_the_selected_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    other = viewer.add_image(np.zeros((256, 256), np.float32), name="other")
    docks = {n: viewer.window.add_plugin_dock_widget("napari-cycsr", n)[1] for n in WIDGETS}
    lr = viewer.layers["pCLE LR (TLI)"]
    viewer.layers.selection.active = lr
    assert docks["Fibres"].image.value is lr
    assert docks["Super-resolve"].image.value is lr
    assert docks["Evaluate"].sr.value is lr and docks["Evaluate"].input.value is not lr
    viewer.layers.selection.active = other
    assert docks["Fibres"].image.value is other and docks["Super-resolve"].image.value is other
    # a layer removed from the viewer leaves no menu pointing at it
    viewer.layers.remove(other)
    assert docks["Fibres"].image.value is not other


def test_progress_bar_is_napari_s_inside_napari(make_napari_viewer):
    from napari.utils import progress

    from napari_cycsr._progress import in_napari, progress_bar

    make_napari_viewer()
    assert in_napari()
    bar = progress_bar(3, "train")
    try:
        assert isinstance(bar, progress)
    finally:
        bar.close()


def test_label_columns_fit_their_widest_label_in_napari_s_font(make_napari_viewer, qtbot):
    """In each docked form every control of a labelled column starts at the same x and no
    label is cut off (magicgui sizes the column in the default font; napari's is larger)."""
    from qtpy.QtCore import QPoint

    from napari_cycsr._widgets._form import _containers

    viewer = make_napari_viewer(show=True)
    checked = 0
    for name in WIDGETS:
        _, form = viewer.window.add_plugin_dock_widget("napari-cycsr", name)
        qtbot.waitUntil(form.body.isVisible)
        for box in _containers(form):
            rows = [w for w in box if w._labeled_widget() is not None and w.native.isVisible()]
            if not box.labels or len(rows) < 2:
                continue
            starts = {w.native.mapTo(form.body, QPoint(0, 0)).x() for w in rows}
            assert len(starts) == 1, (name, box.name, starts)
            for w in rows:
                label = w._labeled_widget()._label_widget.native
                assert label.width() >= label.sizeHint().width(), (name, label.text())
            checked += len(rows)
    assert checked > 20
    # the Train widget's collapsible "Advanced" section, added as a Qt widget
    _, train = viewer.window.add_plugin_dock_widget("napari-cycsr", "Train")
    train.form.collapsible.expand(animate=False)
    advanced = train.form.advanced
    qtbot.waitUntil(advanced.native.isVisible)
    rows = [w for w in advanced if w._labeled_widget() is not None]
    starts = {w.native.mapTo(advanced.native, QPoint(0, 0)).x() for w in rows}
    assert len(rows) >= 5 and len(starts) == 1, starts
    for w in rows:
        label = w._labeled_widget()._label_widget.native
        assert label.width() >= label.sizeHint().width(), label.text()
