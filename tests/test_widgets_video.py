"""Qt tests of the Video widget, the video reader and the video sample, in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_cycsr._widgets.video import REGISTRATION_KEY  # noqa: E402
from napari_cycsr.metrics import psnr  # noqa: E402

pytestmark = pytest.mark.qt


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Video")
    return widget


def _click(qtbot, widget, button):
    button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)


@pytest.fixture
def video_viewer(make_napari_viewer):
    from napari_cycsr._sample_data import synthetic_pcle_video

    viewer = make_napari_viewer()
    for data, kwargs, kind in synthetic_pcle_video(n_frames=6):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    video = viewer.layers["pCLE video (TLI)"]
    video.scale = (1.0, 0.5, 0.5)
    video.translate = (0.0, 10.0, -4.0)
    points = viewer.layers["video fibres"]
    points.scale = (0.5, 0.5)
    points.translate = (10.0, -4.0)
    return viewer


def test_register_fuse_and_leave_one_out(video_viewer, qtbot, errors):
    viewer = video_viewer
    widget = _dock(viewer)
    video = viewer.layers["pCLE video (TLI)"]
    widget.video.value = video
    widget.fibres.value = viewer.layers["video fibres"]
    _click(qtbot, widget, widget.register_button)
    assert errors == []
    reg = video.metadata[REGISTRATION_KEY]
    truth = viewer.layers["video fibres"].metadata["true_shifts"]
    assert np.median(np.hypot(*(reg.shifts - truth).T)) < 0.1
    assert reg.good.all() and "registered 6 frames" in widget.status.value
    assert len(widget.plot.axes.lines) >= 2  # dy and dx plotted
    assert widget.progress.value == widget.progress.max == 6

    _click(qtbot, widget, widget.fuse_button)
    assert errors == []
    hr = viewer.layers["pCLE video (TLI) HR^ (frame 0)"]
    assert hr.data.shape == video.data.shape[1:]
    np.testing.assert_allclose(hr.scale, (0.5, 0.5))
    np.testing.assert_allclose(hr.translate, (10.0, -4.0))
    truth0 = viewer.layers["true frames"].data[0]
    fov = hr.data != 0
    assert psnr(hr.data, truth0, mask=fov, data_range=1.0) > psnr(
        video.data[0], truth0, mask=fov, data_range=1.0
    )

    viewer.dims.set_current_step(0, 3)
    _click(qtbot, widget, widget.loo_button)
    assert errors == []
    loo = viewer.layers["pCLE video (TLI) HR^ without frame 3"]
    assert 3 in loo.metadata["fusion"].left_out and 3 not in loo.metadata["fusion"].frames


def test_sliding_window_mosaic_scale_two(video_viewer, qtbot, errors):
    viewer = video_viewer
    widget = _dock(viewer)
    video = viewer.layers["pCLE video (TLI)"]
    widget.video.value = video
    widget.fibres.value = viewer.layers["video fibres"]
    _click(qtbot, widget, widget.register_button)
    widget.window.value = 3
    widget.method.value = "mean"
    _click(qtbot, widget, widget.video_button)
    stack = viewer.layers["pCLE video (TLI) HR^ video (window 3)"]
    assert stack.data.shape == video.data.shape
    np.testing.assert_allclose(stack.scale, video.scale)
    widget.scale.value = 2
    _click(qtbot, widget, widget.mosaic_button)
    assert errors == []
    mos = viewer.layers["pCLE video (TLI) mosaic"]
    info = mos.metadata["fusion"]
    np.testing.assert_allclose(mos.scale, (0.25, 0.25))
    # canvas pixel (0, 0) sits at the reference-frame coordinates info.origin
    np.testing.assert_allclose(
        mos.translate, np.array([10.0, -4.0]) + 0.5 * np.asarray(info.origin)
    )
    assert mos.data.shape[0] >= 2 * video.data.shape[1] - 4


def test_stop_and_bad_input(video_viewer, qtbot, errors):
    viewer = video_viewer
    widget = _dock(viewer)
    widget.video.value = viewer.layers["pCLE video (TLI)"]
    widget.fuse()  # not registered yet: a clear message, no layer
    assert errors and "register" in errors[-1]
    n_layers = len(viewer.layers)
    still = viewer.add_image(np.zeros((20, 20), np.float32), name="one frame")
    widget.video.value = still
    widget.register()
    assert "expected a stack of frames" in errors[-1]
    assert len(viewer.layers) == n_layers + 1
    widget.video.value = viewer.layers["pCLE video (TLI)"]
    widget.register_button.native.click()
    widget.stop()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert "cancelled" in widget.status.value or "registered" in widget.status.value


def test_reader_opens_a_folder_in_natural_order(make_napari_viewer, tmp_path):
    import tifffile

    for i in (1, 2, 10, 11):
        tifffile.imwrite(tmp_path / f"{i}.tif", np.full((16, 20), i, np.uint8))
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path), plugin="napari-cycsr")
    assert layers[0].data.shape == (4, 16, 20)
    np.testing.assert_array_equal(np.asarray(layers[0].data)[:, 0, 0], [1, 2, 10, 11])
