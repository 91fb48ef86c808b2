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
    assert widget.status.value.startswith("finished")
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
    # the noise-aware projection stops at the noise level of the values (sd 0.01 here), so
    # the error drops to about the noise variance, not to zero
    assert error_sharp < error_tli / 3
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
    assert "colour image" in errors[-1] and "Convert to grey" in errors[-1]

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


# --- issue 11: RGB frames, stacks, mismatches, threads -------------------------------------


def _rgba(frame):
    """A grey frame saved as RGBA by a camera: equal colour channels, opaque alpha."""
    out = np.empty((*frame.shape, 4), dtype=frame.dtype)
    out[..., :3] = frame[..., None]
    out[..., 3] = np.iinfo(frame.dtype).max if frame.dtype.kind == "u" else 1
    return out


def test_combos_start_on_the_selected_layer_not_the_first(viewer, qtbot):
    """The sample's first layer is the hidden ground truth: Detect must not default to it."""
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    widget = _dock(viewer, "Fibres")
    assert widget.image.value is viewer.layers["pCLE LR (TLI)"]
    assert widget.points.value is viewer.layers["fibres"]
    viewer.layers.selection.active = viewer.layers["ground truth HR"]
    assert widget.image.value is viewer.layers["ground truth HR"]
    assert widget.background.value is None  # optional inputs are not filled by guessing


def test_rgba_frame_with_equal_channels_detects(viewer, qtbot, errors):
    viewer.open_sample("napari-cycsr", "raw_bundle_frame")
    raw = viewer.layers["raw bundle frame"].data
    rgba = _rgba(np.round(raw / raw.max() * 255).astype(np.uint8))
    layer = viewer.add_image(rgba, rgb=True, name="camera RGBA")
    widget = _dock(viewer, "Fibres")
    assert widget.image.value is layer  # the new layer is the selected one
    assert widget.grey.native.isHidden()  # grey saved as RGBA needs no conversion
    widget.background.value = viewer.layers["raw bundle background"]
    widget.detect_button.native.click()
    _wait(qtbot, widget, 60_000)
    assert errors == []
    points = viewer.layers["camera RGBA fibres"]
    n_expected = np.pi * 192**2 / (4.5**2 * np.sqrt(3) / 2)
    assert 0.8 * n_expected < len(points.data) < 1.2 * n_expected
    widget.reconstruct_button.native.click()
    _wait(qtbot, widget, 60_000)
    assert viewer.layers["camera RGBA [TLI]"].data.shape == (384, 384)
    np.testing.assert_array_equal(layer.data, rgba)  # untouched


def test_true_colour_layer_converts_to_grey_in_one_click(viewer, qtbot, errors):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    layer = viewer.add_image(colour, rgb=True, name="photo", scale=(2, 3))
    widget = _dock(viewer, "Fibres")
    assert not widget.grey.native.isHidden()
    widget.grey.native.click()
    grey = viewer.layers["photo [grey]"]
    assert grey.data.shape == (40, 48) and grey.data.dtype == np.float32
    expected = colour.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(grey.data, expected, rtol=1e-5)
    assert tuple(grey.scale) == (2, 3)
    assert widget.image.value is grey and widget.grey.native.isHidden()
    np.testing.assert_array_equal(layer.data, colour)


def test_fibres_of_another_image_size_are_refused(viewer, qtbot, errors):
    viewer.open_sample("napari-cycsr", "synthetic_pcle")  # fibres of a 256 x 256 image
    big = viewer.add_image(np.zeros((384, 384), np.float32), name="384 frame")
    widget = _dock(viewer, "Fibres")
    widget.image.value = big
    widget.points.value = viewer.layers["fibres"]
    for button in (widget.voronoi_button, widget.reconstruct_button):
        button.native.click()
        assert "were found on a 256x256 image" in errors[-1] and "384x384" in errors[-1]
    assert widget.worker is None and "384 frame [TLI]" not in viewer.layers


def test_points_outside_the_image_are_refused(viewer, qtbot, errors):
    viewer.add_image(np.zeros((64, 64), np.float32), name="small")
    yy, xx = np.mgrid[4:120:6, 4:120:6]
    viewer.add_points(np.c_[yy.ravel(), xx.ravel()].astype(float), name="big lattice")
    widget = _dock(viewer, "Fibres")
    widget.image.value = viewer.layers["small"]
    widget.points.value = viewer.layers["big lattice"]
    widget.reconstruct_button.native.click()
    assert "lie outside the 64x64 image" in errors[-1]


def test_detection_without_background_on_a_small_part_warns(viewer, qtbot, errors, monkeypatch):
    from napari_cycsr._widgets import fibres

    warnings = []
    monkeypatch.setattr(fibres, "warn", warnings.append)
    viewer.open_sample("napari-cycsr", "raw_bundle_frame")
    raw = viewer.layers["raw bundle frame"].data
    yy, xx = np.mgrid[: raw.shape[0], : raw.shape[1]]
    corner = raw * (((yy - 120) ** 2 + (xx - 120) ** 2) < 60**2)  # cores lit in one corner only
    layer = viewer.add_image(corner.astype(raw.dtype), name="dim frame")
    widget = _dock(viewer, "Fibres")
    widget.image.value = layer
    widget.background.value = None
    widget.detect_button.native.click()
    _wait(qtbot, widget, 60_000)
    assert errors == []
    assert len(warnings) == 1 and "Choose the background" in warnings[0]
    assert "% of the frame" in warnings[0]
    # with the background chosen there is no warning
    widget.image.value = viewer.layers["raw bundle frame"]
    widget.background.value = viewer.layers["raw bundle background"]
    widget.detect_button.native.click()
    _wait(qtbot, widget, 60_000)
    assert len(warnings) == 1


def test_stack_detect_overlay_reconstruct_and_cancel(viewer, qtbot, errors):
    """(T, Y, X) stacks: detection on the displayed frame, reconstruction of every frame."""
    viewer.open_sample("napari-cycsr", "raw_bundle_frame")
    raw = viewer.layers["raw bundle frame"].data.astype(np.float32)
    stack = np.stack([raw * (1 + 0.1 * t) for t in range(10)])
    layer = viewer.add_image(stack, name="video", scale=(1, 0.5, 0.5))
    viewer.dims.set_current_step(0, 4)
    widget = _dock(viewer, "Fibres")
    widget.image.value = layer
    widget.background.value = viewer.layers["raw bundle background"]
    widget.detect_button.native.click()
    _wait(qtbot, widget, 60_000)
    points = viewer.layers["video fibres"]
    assert tuple(points.scale[-2:]) == (0.5, 0.5)
    widget.voronoi_button.native.click()
    _wait(qtbot, widget, 60_000)
    assert "video fibres cells" in viewer.layers
    widget.reconstruct_button.native.click()
    _wait(qtbot, widget, 60_000)
    assert errors == []
    tli = viewer.layers["video [TLI]"]
    assert tli.data.shape == (10, 384, 384) and tuple(tli.scale) == (1, 0.5, 0.5)
    # frame t is (1 + 0.1 t) times frame 0 (background-divided values scale linearly)
    fov = points.metadata["cycsr_bundle"].fov_mask
    np.testing.assert_allclose(tli.data[7][fov], 1.7 * tli.data[0][fov], rtol=1e-4, atol=1e-6)
    assert widget.progress.max == widget.progress.value > 0

    # a cancelled stack says so and adds nothing
    big = viewer.add_image(np.repeat(stack, 6, axis=0), name="long video")
    widget.image.value = big
    widget.reconstruct_button.native.click()
    assert errors == []
    assert widget.cancel_button.enabled and not widget.detect_button.enabled
    widget.cancel_button.native.click()
    _wait(qtbot, widget, 60_000)
    assert "long video [TLI]" not in viewer.layers
    assert widget.status.value.startswith("cancelled"), (widget.status.value, errors)
    assert widget.detect_button.enabled and not widget.cancel_button.enabled
    assert errors == []


def test_real_frame_without_background_warns(viewer, qtbot, errors, load_frame, monkeypatch):
    """tissue_paper.tif without its background: half the cores are missed; the user is told."""
    from napari_cycsr._widgets import fibres

    warnings = []
    monkeypatch.setattr(fibres, "warn", warnings.append)
    layer = viewer.add_image(load_frame("tissue_paper.tif"), name="tissue")
    viewer.add_image(load_frame("tissue_paper_back.tif"), name="tissue back")
    widget = _dock(viewer, "Fibres")
    widget.image.value = layer
    widget.background.value = None
    widget.detect_button.native.click()
    _wait(qtbot, widget, 120_000)
    assert errors == []
    assert len(warnings) == 1 and "choose the background" in warnings[0].lower()
    # the background frame (named like one, same size) is offered on a fresh widget
    fresh = fibres.FibresWidget(viewer)
    fresh.image.value = layer
    assert fresh.background.value is viewer.layers["tissue back"]
