"""Qt tests of the Super-resolve widget, through the plugin manifest."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
torch = pytest.importorskip("torch")

from napari_cycsr._widgets.super_resolve import FROM_FILE  # noqa: E402
from napari_cycsr.io import save_model  # noqa: E402
from napari_cycsr.models import SRModel, get_preset  # noqa: E402

pytestmark = pytest.mark.qt


def _model(scale=1, seed=0, **metadata):
    torch.manual_seed(seed)
    return SRModel.new(get_preset("tiny", scale=scale), metadata=dict(metadata))


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Super-resolve")
    return widget


def _run(qtbot, widget):
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)


def test_registered_model_on_stack_keeps_spatial(make_napari_viewer, qtbot, errors, registry):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    stack = rng.random((3, 40, 48)).astype(np.float32)
    layer = viewer.add_image(stack, name="video", scale=(1.0, 0.5, 0.5), translate=(0, 4.0, 2.0))
    registry.register("my model", _model())
    widget = _dock(viewer)
    assert widget.model.value == "my model"
    widget.image.value = layer
    widget.device.value = "cpu"
    _run(qtbot, widget)
    assert errors == []
    sr = viewer.layers["video [SR]"]
    assert sr.data.shape == (3, 40, 48) and sr.data.dtype == np.float32
    assert np.abs(sr.data).max() > 0
    assert tuple(sr.scale) == (1.0, 0.5, 0.5) and tuple(sr.translate) == (0, 4.0, 2.0)
    assert tuple(sr.contrast_limits) == tuple(layer.contrast_limits)
    assert widget.progress.value == widget.progress.max == 3


def test_model_file_scale_two(make_napari_viewer, qtbot, errors, registry, tmp_path):
    viewer = make_napari_viewer()
    path = save_model(_model(scale=2), tmp_path / "x2.safetensors")
    layer = viewer.add_image(np.random.default_rng(1).random((32, 32)), name="lr", scale=(2, 2))
    widget = _dock(viewer)
    widget.image.value = layer
    widget.model.value = FROM_FILE
    widget.model_file.value = path
    widget.tile.value = 0
    _run(qtbot, widget)
    assert errors == []
    sr = viewer.layers["lr [SR]"]
    assert sr.data.shape == (64, 64)
    np.testing.assert_allclose(sr.scale, (1.0, 1.0))
    # pixel centres of the finer grid straddle the input pixel: shifted by -0.25 input px
    np.testing.assert_allclose(sr.translate, (-0.5, -0.5))


def test_dask_input_stays_lazy(make_napari_viewer, qtbot, errors, registry):
    da = pytest.importorskip("dask.array")
    viewer = make_napari_viewer()
    data = da.from_array(np.random.default_rng(2).random((4, 32, 32), dtype=np.float32), chunks=1)
    layer = viewer.add_image(data, name="lazy")
    registry.register("m", _model())
    widget = _dock(viewer)
    widget.image.value = layer
    _run(qtbot, widget)
    assert errors == []
    out = viewer.layers["lazy [SR]"].data
    assert isinstance(out, da.Array) and out.shape == (4, 32, 32)


def test_cancel_adds_no_layer(make_napari_viewer, qtbot, errors, registry):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((40, 64, 64), dtype=np.float32), name="long")
    registry.register("m", _model())
    widget = _dock(viewer)
    widget.image.value = layer
    widget.run_button.native.click()
    assert widget.cancel_button.enabled
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert "long [SR]" not in viewer.layers
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_bad_input_shows_message(make_napari_viewer, qtbot, errors, registry, tmp_path):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    widget.run_button.native.click()  # nothing chosen
    assert "choose the image" in errors[-1]

    rgb = viewer.add_image(np.indices((16, 16, 3)).sum(0).astype(np.uint8), rgb=True, name="rgb")
    widget.image.value = rgb
    widget.run_button.native.click()
    assert "RGB" in errors[-1]

    grey = viewer.add_image(np.random.default_rng(0).random((48, 48)), name="grey")
    widget.image.value = grey
    widget.model.value = FROM_FILE
    widget.model_file.value = tmp_path / "missing.safetensors"
    widget.run_button.native.click()
    assert "model file" in errors[-1]

    # a model trained on fibres 3 px apart, on an image whose fibres are 8 px apart
    registry.register("fine", _model(fibre_spacing=3.0))
    yy, xx = np.mgrid[4:44:8, 4:44:8]
    viewer.add_points(np.c_[yy.ravel(), xx.ravel()].astype(float), name="coarse fibres")
    widget.model.value = "fine"
    widget.fibres.value = viewer.layers["coarse fibres"]
    _run(qtbot, widget)
    assert "trained on fibres 3.00 px apart" in errors[-1]
    assert [layer.name for layer in viewer.layers] == ["rgb", "grey", "coarse fibres"]


def test_fibre_consistency_checkbox(make_napari_viewer, qtbot, errors, registry):
    from skimage import data

    from napari_cycsr.metrics import cycle_error
    from napari_cycsr.simulate import simulate_pcle

    sim = simulate_pcle(data.camera()[200:264, 200:264] / 255.0, seed=0)
    viewer = make_napari_viewer()
    layer = viewer.add_image(sim.lr, name="tli")
    points = viewer.add_points(sim.bundle.centres, name="fibres")
    registry.register("m", _model())
    widget = _dock(viewer)
    widget.image.value = layer
    widget.device.value = "cpu"
    assert not widget.consistency.value and not widget.consistency.enabled  # no fibres yet
    widget.fibres.value = points
    assert widget.consistency.value and widget.consistency.enabled  # on by default
    _run(qtbot, widget)
    assert errors == []
    projected = np.asarray(viewer.layers["tli [SR]"].data)
    widget.consistency.value = False
    _run(qtbot, widget)
    assert errors == []
    plain = np.asarray(viewer.layers["tli [SR] [1]"].data)
    b, v = sim.bundle, sim.values
    assert cycle_error(projected, b, v) < cycle_error(plain, b, v) / 5
    assert np.all(projected[~b.fov_mask] == 0) and np.all(plain[~b.fov_mask] == 0)
    widget.fibres.value = None
    assert not widget.consistency.value and not widget.consistency.enabled


def test_precision_menu_is_passed_to_inference(
    make_napari_viewer, qtbot, errors, registry, monkeypatch
):
    from napari_cycsr import inference

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(3).random((24, 24)), name="lr")
    registry.register("m", _model())
    widget = _dock(viewer)
    assert widget.precision.value == "auto" and widget.precision.tooltip
    seen = []
    real = inference.iter_super_resolve

    def spy(*args, **kwargs):
        seen.append(kwargs.get("precision"))
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "iter_super_resolve", spy)
    widget.image.value = layer
    widget.device.value = "cpu"
    widget.precision.value = "fp32"
    _run(qtbot, widget)
    assert errors == [] and seen == ["fp32"]
    assert viewer.layers["lr [SR]"].data.shape == (24, 24)
