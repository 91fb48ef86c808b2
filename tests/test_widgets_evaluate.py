"""Qt tests of the Evaluate widget, through the plugin manifest."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_cycsr._widgets import _common  # noqa: E402

pytestmark = pytest.mark.qt


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Evaluate")
    return widget


def test_table_and_csv(make_napari_viewer, qtbot, errors):
    from scipy import ndimage

    viewer = make_napari_viewer()
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    lr = viewer.layers["pCLE LR (TLI)"]
    # a stand-in "SR" layer: the input a little sharpened
    sharp = lr.data + 0.5 * (lr.data - ndimage.gaussian_filter(lr.data, 1.0))
    viewer.add_image(sharp.astype(np.float32), name="sharp")
    widget = _dock(viewer)
    widget.sr.value = viewer.layers["sharp"]
    widget.input.value = lr
    widget.reference.value = viewer.layers["ground truth HR"]
    widget.fibres.value = viewer.layers["fibres"]
    widget.evaluate_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert errors == []

    table = widget.table
    assert table.rowCount() == 2
    headers = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount())]
    for column in ("ssim", "psnr", "gcf", "dgcf_ref", "dgcf_lr", "cycle_error"):
        assert column in headers
    methods = [table.item(i, headers.index("method")).text() for i in range(2)]
    assert methods == ["pCLE LR (TLI)", "sharp"]
    ssim_lr = float(table.item(0, headers.index("ssim")).text())
    assert 0.2 < ssim_lr < 1.0
    # the measured fibre values are the input sampled at the fibre centres
    from napari_cycsr.metrics import cycle_error

    bundle = viewer.layers["fibres"].metadata[_common.BUNDLE_KEY]
    cyc = float(table.item(1, headers.index("cycle_error")).text())
    expected = cycle_error(sharp, bundle, bundle.sample(lr.data))
    assert cyc == pytest.approx(expected, rel=1e-3) and cyc > 0
    assert float(table.item(1, headers.index("dgcf_lr")).text()) > 0  # sharper than input

    status = widget.status.value
    assert "with reference" in status and "field of view of 'fibres'" in status
    widget.copy_button.native.click()
    text = QApplication.clipboard().text()
    lines = text.strip().splitlines()
    assert lines[0].startswith("method,frame,") and len(lines) == 3


def test_bad_input(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    widget.evaluate_button.native.click()
    assert "choose the super-resolved layer" in errors[-1]

    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="sr x2")
    viewer.add_image(np.random.default_rng(1).random((32, 32)), name="lr")
    widget.sr.value = viewer.layers["sr x2"]
    widget.input.value = viewer.layers["lr"]
    widget.evaluate_button.native.click()
    assert "another scale" in errors[-1]

    viewer.add_image(np.indices((32, 32, 3)).sum(0).astype(np.uint8), rgb=True, name="rgb")
    widget.sr.value = viewer.layers["rgb"]
    widget.evaluate_button.native.click()
    assert "colour image" in errors[-1]
    assert widget.table.rowCount() == 0 and widget.worker is None


# --- issue 11: no reference, stacks, plot, default layers ------------------------------------


def _sharpened(data):
    from scipy import ndimage

    return (data + 0.5 * (data - ndimage.gaussian_filter(data, 1.0))).astype(np.float32)


def test_defaults_never_put_one_layer_in_both_menus(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    widget = _dock(viewer)
    assert widget.sr.value is not widget.input.value
    lr = viewer.layers["pCLE LR (TLI)"]
    # an SR layer made by the Super-resolve widget: selected -> it is scored against its input
    sr = viewer.add_image(_sharpened(lr.data), name="lr [SR m]",
                          metadata={"cycsr_source": "pCLE LR (TLI)"})  # fmt: skip
    assert widget.sr.value is sr and widget.input.value is lr
    viewer.layers.selection.active = lr  # selecting the input: the two menus swap
    assert widget.sr.value is lr and widget.input.value is sr
    widget.evaluate_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert errors == []  # the first click works


def test_without_reference_on_a_stack_with_plot(make_napari_viewer, qtbot, errors):
    """Real data has no reference: the reference-free measures are shown, per frame."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    lr = viewer.layers["pCLE LR (TLI)"].data
    stack = np.stack([lr * (0.6 + 0.1 * t) for t in range(4)]).astype(np.float32)
    sharp = np.stack([_sharpened(frame) for frame in stack])
    lr_layer = viewer.add_image(stack, name="video TLI")
    viewer.add_image(sharp, name="video SR")
    widget = _dock(viewer)
    widget.sr.value = viewer.layers["video SR"]
    widget.input.value = lr_layer
    widget.reference.value = None
    widget.fibres.value = None
    widget.scope.value = "stack"
    widget.evaluate_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert errors == []
    table = widget.table
    headers = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount())]
    assert headers == ["method", "frames", "gcf", "dgcf_lr", "sharpness"]
    texts = [table.item(i, j).text() for i in range(2) for j in range(len(headers))]
    assert "n/a" not in texts
    sharp_lr = float(table.item(0, headers.index("sharpness")).text())
    sharp_sr = float(table.item(1, headers.index("sharpness")).text())
    assert sharp_sr > sharp_lr > 0
    # scored inside the field of view found from the input's black surround
    assert "without a reference" in widget.status.value
    assert "flat surround" in widget.status.value
    assert len(widget.frame_rows) == 8 and {r["frame"] for r in widget.frame_rows} == {0, 1, 2, 3}
    # the plot: one curve per layer, one point per frame
    widget.metric.value = "sharpness"
    lines = widget.plot.axes.get_lines()
    assert len(lines) == 2 and all(len(line.get_xdata()) == 4 for line in lines)
    assert widget.plot.axes.get_ylabel() == "sharpness"

    # with the fibres: the cycle error is added, and the field of view is theirs
    widget.fibres.value = viewer.layers["fibres"]
    widget.scope.value = "frame"
    widget.evaluate_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    headers = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount())]
    assert "cycle_error" in headers and "frames" not in headers
    assert len(widget.plot.axes.patches) == 2  # one bar per layer for a single frame
    assert errors == []
