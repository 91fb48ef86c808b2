"""Qt tests of the Train widget: a tiny run from the widget, stop, resume, save, reload."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("torch")

from napari.layers import Image  # noqa: E402

from napari_cycsr._widgets.super_resolve import FROM_FILE  # noqa: E402
from napari_cycsr._widgets.train import PREVIEW_NAME  # noqa: E402

pytestmark = pytest.mark.qt


@pytest.fixture
def setup(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Train")
    widget.lr_layers.value = [viewer.layers["pCLE LR (TLI)"]]
    widget.fibres.value = viewer.layers["fibres"]
    form = widget.form
    form.preset.value = "tiny"
    form.batch_size.value = 2
    form.patch.value = 32
    form.device.value = "cpu"
    form.preview_every.value = 2
    return viewer, widget


def _wait(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_train_stop_and_reload(setup, qtbot, errors, registry, tmp_path):
    viewer, widget = setup
    widget.form.iterations.value = 10_000
    widget.model_path.value = tmp_path / "model.safetensors"
    widget.start_button.native.click()
    assert widget.stop_button.enabled and not widget.start_button.enabled
    qtbot.waitUntil(lambda: len(widget.plot.iterations) >= 2, timeout=60_000)
    widget.stop_button.native.click()
    _wait(qtbot, widget)
    assert errors == []
    stopped_at = widget.trainer.iteration
    assert 2 <= stopped_at < 10_000  # stopped within an iteration of the request
    assert widget.plot.iterations == list(range(1, stopped_at + 1))
    assert np.isfinite(widget.plot.values["l_vec"]).all()
    assert np.isfinite(widget.plot.values["loss_d"]).all()
    preview = viewer.layers[PREVIEW_NAME]
    assert isinstance(preview, Image) and preview.data.ndim == 2 and preview.data.std() > 0
    assert preview.visible
    # the preview sits over its crop of the LR layer
    y0, x0, h, w = widget.trainer.preview_crop
    assert preview.data.shape == (h, w)
    np.testing.assert_allclose(preview.scale, viewer.layers["pCLE LR (TLI)"].scale)
    np.testing.assert_allclose(preview.translate, (y0, x0))
    assert widget.progress.value == stopped_at and widget.progress.max == 10_000
    assert (tmp_path / "model.checkpoint.safetensors").is_file()
    assert (tmp_path / "model.safetensors").is_file()
    assert registry.names() and widget.save_button.enabled
    assert widget.start_button.enabled and not widget.stop_button.enabled

    # the saved model reloads in the Super-resolve widget
    _, sr_widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Super-resolve")
    sr_widget.image.value = viewer.layers["pCLE LR (TLI)"]
    sr_widget.model.value = FROM_FILE
    sr_widget.model_file.value = tmp_path / "model.safetensors"
    sr_widget.run_button.native.click()
    qtbot.waitUntil(lambda: sr_widget.worker is None, timeout=30_000)
    assert errors == []
    sr = viewer.layers["pCLE LR (TLI) [SR]"].data
    assert sr.shape == (256, 256) and np.abs(sr).max() > 0


@pytest.mark.slow
def test_finish_then_resume_longer(setup, qtbot, errors, registry, tmp_path):
    viewer, widget = setup
    widget.form.iterations.value = 2
    widget.model_path.value = tmp_path / "short.safetensors"
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors == [] and widget.trainer.iteration == 2
    widget.form.iterations.value = 4
    widget.resume_button.native.click()
    _wait(qtbot, widget)
    assert errors == []
    assert widget.trainer.iteration == 4
    assert widget.plot.iterations == [1, 2, 3, 4]


def test_bad_input_shows_message(make_napari_viewer, qtbot, errors, registry):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Train")
    widget.start_button.native.click()
    assert "choose one or more LR layers" in errors[-1]

    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="lr")
    viewer.add_points(np.array([[1.0, 1.0], [5.0, 5.0]]), name="two")
    widget.lr_layers.value = [viewer.layers["lr"]]
    widget.fibres.value = viewer.layers["two"]
    widget.start_button.native.click()
    assert "at least 3" in errors[-1]

    assert not widget.save_button.enabled  # nothing trained yet
    widget.save_model()
    assert "train a model first" in errors[-1]
    assert widget.worker is None and [ly.name for ly in viewer.layers] == ["lr", "two"]


def test_error_in_worker_is_reported(setup, qtbot, errors, registry):
    viewer, widget = setup
    widget.target.value = "images"
    widget.start_button.native.click()  # no HR layers chosen: refused at the door
    assert "needs HR layers" in errors[-1]

    # a paired target of the wrong size fails inside the worker: message, widget usable
    viewer.add_image(np.zeros((50, 50), dtype=np.float32), name="wrong HR")
    widget.target.value = "paired"
    widget.target_layers.value = [viewer.layers["wrong HR"]]
    widget.form.iterations.value = 2
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors[-1].startswith("Training failed:")
    assert widget.start_button.enabled and not widget.stop_button.enabled
    assert PREVIEW_NAME not in viewer.layers


def test_train_form_starts_from_the_library_defaults(qtbot):
    from napari_cycsr._widgets._train_form import TrainForm
    from napari_cycsr.training import TrainConfig

    form = TrainForm()
    defaults = TrainConfig()
    assert form.w_adv.value == pytest.approx(defaults.w_adv)
    assert form.w_vec.value == pytest.approx(defaults.w_vec)
    assert form.config().w_adv == pytest.approx(defaults.w_adv)


def test_train_form_precision_menu(qtbot):
    from napari_cycsr._widgets._train_form import TrainForm

    form = TrainForm()
    assert form.precision.value == "auto" and form.config().precision == "auto"
    assert {"auto", "fp32", "bf16"} <= set(form.precision.choices)
    assert "AMX" in form.precision.tooltip
    form.precision.value = "fp32"
    assert form.config().precision == "fp32"
