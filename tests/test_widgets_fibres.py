"""Qt tests of the Fibres widget and the sample data, through the plugin manifest."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.layers import Image, Points  # noqa: E402

from napari_cycsr._widgets import _common  # noqa: E402

pytestmark = pytest.mark.qt


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", name)
    return widget


def _wait(qtbot, widget, timeout=20_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_synthetic_sample_loads(viewer):
    layers = viewer.open_sample("napari-cycsr", "synthetic_pcle")
    names = [layer.name for layer in layers]
    assert names == ["ground truth HR", "pCLE LR (TLI)", "fibres"]
    lr, pts = viewer.layers["pCLE LR (TLI)"], viewer.layers["fibres"]
    assert isinstance(lr, Image) and lr.data.shape == (256, 256) and lr.data.dtype == np.float32
    assert isinstance(pts, Points) and len(pts.data) > 1000
    assert lr.data.std() > 0.05


def test_raw_frame_sample_loads(viewer):
    viewer.open_sample("napari-cycsr", "raw_bundle_frame")
    raw = viewer.layers["raw bundle frame"].data
    background = viewer.layers["raw bundle background"].data
    assert raw.shape == background.shape == (384, 384)
    # cores are bright spots over a dark cladding: strong local contrast
    assert np.percentile(background, 99) > 5 * np.percentile(background, 20)


def test_voronoi_reconstruct_lattice(viewer, qtbot, errors):
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    lr = viewer.layers["pCLE LR (TLI)"]
    lr.scale = (0.5, 0.5)
    lr.translate = (10.0, -3.0)
    viewer.layers["fibres"].scale = (0.5, 0.5)
    viewer.layers["fibres"].translate = (10.0, -3.0)
    widget = _dock(viewer, "Fibres")
    widget.image.value = lr
    widget.points.value = viewer.layers["fibres"]

    widget.voronoi_button.native.click()
    _wait(qtbot, widget)
    cells = viewer.layers["fibres cells"]
    # cells ~2.6 px wide: the overlay is drawn on a 4x finer grid that overlays the image
    assert isinstance(cells, Image) and cells.data.shape == (1024, 1024)
    assert 0.05 < cells.data.mean() < 0.6  # thin borders, not everything or nothing
    np.testing.assert_allclose(cells.scale, (0.125, 0.125))
    np.testing.assert_allclose(cells.translate, (10.0 - 0.1875, -3.0 - 0.1875))
    # a border pixel's world position lies between two fibres: its nearest-fibre distance
    # is about half the spacing, never ~0 (on a centre)
    from scipy.spatial import cKDTree

    bundle = viewer.layers["fibres"].metadata[_common.BUNDLE_KEY]
    border = np.argwhere(cells.data > 0)[::97] * 0.25 - 0.375  # fine -> image pixels
    dist = cKDTree(bundle.centres).query(border)[0]
    assert np.median(dist) > 0.3 * bundle.spacing

    widget.reconstruct_button.native.click()
    _wait(qtbot, widget)
    tli = viewer.layers["pCLE LR (TLI) [TLI]"]
    assert tli.data.shape == (256, 256) and tli.data.dtype == np.float32
    assert tuple(tli.scale) == (0.5, 0.5)
    # reconstructing a TLI image from its own fibres gives it back inside the field of view
    fov = viewer.layers["fibres"].metadata[_common.BUNDLE_KEY].fov_mask
    assert np.abs(tli.data - lr.data)[fov].mean() < 0.02
    # with projection steps: consistent with the core values, sharper than the TLI
    from napari_cycsr.consistency import cell_means

    widget.project_steps.value = 2
    widget.reconstruct_button.native.click()
    _wait(qtbot, widget)
    sharp = viewer.layers["pCLE LR (TLI) [TLI + projection 2]"]
    assert sharp.data.shape == (256, 256) and tuple(sharp.scale) == (0.5, 0.5)
    values = bundle.core_values(lr.data)
    error_tli = np.nanmean((cell_means(tli.data, bundle) - values) ** 2)
    error_sharp = np.nanmean((cell_means(sharp.data, bundle) - values) ** 2)
    assert error_sharp < error_tli / 5
    assert "projected" in widget.status.value

    widget.spacing.value = 6.0
    widget.lattice_button.native.click()
    lattice = viewer.layers["lattice 6 px"]
    assert isinstance(lattice, Points)
    n_expected = np.pi * 128**2 / (6.0**2 * np.sqrt(3) / 2)
    assert 0.7 * n_expected < len(lattice.data) < 1.2 * n_expected
    assert errors == []


def test_csv_round_trip(viewer, qtbot, errors, tmp_path):
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    widget = _dock(viewer, "Fibres")
    widget.image.value = viewer.layers["pCLE LR (TLI)"]
    widget.points.value = viewer.layers["fibres"]
    widget.csv_path.value = tmp_path / "fibres.csv"
    widget.save_button.native.click()
    assert (tmp_path / "fibres.csv").is_file()
    widget.load_button.native.click()
    loaded = viewer.layers["fibres [1]"] if "fibres [1]" in viewer.layers else viewer.layers[-1]
    assert isinstance(loaded, Points)
    np.testing.assert_allclose(loaded.data, viewer.layers["fibres"].data)
    assert errors == []


def test_detect_cores_on_raw_frame(viewer, qtbot, errors):
    if not hasattr(pytest.importorskip("napari_cycsr.fibres").FibreBundle, "detect"):
        pytest.skip("FibreBundle.detect is not implemented yet")
    viewer.open_sample("napari-cycsr", "raw_bundle_frame")
    widget = _dock(viewer, "Fibres")
    widget.image.value = viewer.layers["raw bundle frame"]
    widget.background.value = viewer.layers["raw bundle background"]
    widget.detect_button.native.click()
    _wait(qtbot, widget, 60_000)
    assert errors == []
    points = viewer.layers["raw bundle frame fibres"]
    n_expected = np.pi * 192**2 / (4.5**2 * np.sqrt(3) / 2)
    assert 0.8 * n_expected < len(points.data) < 1.2 * n_expected
    assert widget.points.value is points

    widget.reconstruct_button.native.click()
    _wait(qtbot, widget, 60_000)
    tli = viewer.layers["raw bundle frame [TLI]"].data
    assert tli.shape == (384, 384) and np.isfinite(tli).all() and tli.max() > 0


def test_bad_input_changes_no_layer(viewer, qtbot, errors):
    widget = _dock(viewer, "Fibres")
    widget.detect_button.native.click()  # no image at all
    assert errors and "choose the bundle image" in errors[-1]

    viewer.add_image(np.indices((32, 32, 3)).sum(0).astype(np.uint8), rgb=True, name="rgb")
    widget.image.value = viewer.layers["rgb"]
    widget.detect_button.native.click()
    assert "RGB" in errors[-1]

    viewer.add_image(np.random.default_rng(0).random((32, 32)), name="grey")
    viewer.add_points(np.array([[1.0, 1.0], [5.0, 5.0]]), name="two")
    widget.image.value = viewer.layers["grey"]
    widget.points.value = viewer.layers["two"]
    widget.voronoi_button.native.click()
    assert "at least 3" in errors[-1]
    widget.reconstruct_button.native.click()
    assert "at least 3" in errors[-1]
    assert widget.worker is None
    assert [layer.name for layer in viewer.layers] == ["rgb", "grey", "two"]


def test_napari_opens_real_lzw_frames_and_detects(viewer, qtbot, errors, shared_data):
    """The real frames are LZW-compressed TIFFs: napari's own reader opens them (imagecodecs is
    a dependency), and the Fibres widget finds the cores on the opened layer."""
    (frame,) = viewer.open(str(shared_data / "usaf1_background.tif"), plugin="napari")
    assert isinstance(frame, Image) and frame.data.shape == (960, 1280)
    widget = _dock(viewer, "Fibres")
    widget.image.value = frame
    widget.detect_button.native.click()
    _wait(qtbot, widget, timeout=60_000)
    points = widget.points.value
    assert isinstance(points, Points) and 20_000 < len(points.data) < 35_000
    assert errors == []
