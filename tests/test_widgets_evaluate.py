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

    widget.copy_button.native.click()
    text = QApplication.clipboard().text()
    lines = text.strip().splitlines()
    assert lines[0].startswith("method,") and len(lines) == 3


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
    assert "RGB" in errors[-1]
    assert widget.table.rowCount() == 0 and widget.worker is None
