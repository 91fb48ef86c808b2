"""Qt tests of the Train widget: a tiny run from the widget, stop, resume, save, reload."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("torch")

from napari.layers import Image  # noqa: E402

from napari_cycsr._widgets.super_resolve import FROM_FILE  # noqa: E402
from napari_cycsr._widgets.train import FROM_SCRATCH, PREVIEW_NAME  # noqa: E402

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
    assert (tmp_path / "model_checkpoints" / "checkpoint.safetensors").is_file()
    assert (tmp_path / "model.safetensors").is_file()
    assert registry.names() and widget.save_button.enabled
    assert widget.status.value.startswith(f"stopped at iteration {stopped_at} of 10000")
    assert widget.start_button.enabled and not widget.stop_button.enabled

    # the saved model reloads in the Super-resolve widget
    _, sr_widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Super-resolve")
    sr_widget.image.value = viewer.layers["pCLE LR (TLI)"]
    sr_widget.model.value = FROM_FILE
    sr_widget.model_file.value = tmp_path / "model.safetensors"
    sr_widget.run_button.native.click()
    qtbot.waitUntil(lambda: sr_widget.worker is None, timeout=30_000)
    assert errors == []
    sr = viewer.layers["pCLE LR (TLI) [SR model]"].data
    assert sr.shape == (256, 256) and np.abs(sr).max() > 0


@pytest.mark.slow
def test_finish_then_resume_longer(setup, qtbot, errors, registry, tmp_path):
    viewer, widget = setup
    widget.form.iterations.value = 2
    widget.model_path.value = tmp_path / "short.safetensors"
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors == [] and widget.trainer.iteration == 2
    from napari_cycsr._device import cpu_count

    # one CPU stays with napari's GUI thread (on a 1-CPU machine: the one thread)
    assert widget.trainer.config.threads == max(1, cpu_count() - 1)
    widget.form.iterations.value = 4
    widget.resume_button.native.click()
    _wait(qtbot, widget)
    assert errors == []
    assert widget.trainer.iteration == 4
    assert widget.plot.iterations == [1, 2, 3, 4]
    assert widget.status.value.startswith("finished 4 iterations")


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

    # a paired target of the wrong size is refused before any work starts
    viewer.add_image(np.zeros((50, 50), dtype=np.float32), name="wrong HR")
    widget.target.value = "paired"
    widget.target_layers.value = [viewer.layers["wrong HR"]]
    widget.form.iterations.value = 2
    widget.start_button.native.click()
    assert "paired HR layer 'wrong HR' is 50x50; it must be 256x256" in errors[-1]
    assert widget.worker is None

    # HR images the target sampler cannot use fail inside the worker: message, widget usable
    viewer.add_image(np.zeros((300, 300), dtype=np.float32), name="flat HR")
    widget.target.value = "images"
    widget.target_layers.value = [viewer.layers["flat HR"]]
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors[-1].startswith("Training failed:")
    assert widget.status.value.startswith("Training failed:")
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


# --- issue 11 ---------------------------------------------------------------------------------


def _quick(widget, iterations):
    form = widget.form
    form.preset.value, form.batch_size.value, form.patch.value = "tiny", 2, 32
    form.device.value, form.preview_every.value = "cpu", 0
    form.iterations.value = iterations


def test_finished_run_is_named_kept_and_listed(setup, qtbot, errors, registry, models_folder):
    """A normal finish says "finished"; the model is named after what made it, reachable from
    the console (models_in_session) and kept in the models folder with its details."""
    import napari_cycsr
    from napari_cycsr.models_store import saved_models

    viewer, widget = setup
    _quick(widget, 3)
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors == []
    assert widget.status.value.startswith("finished 3 iterations")
    name = "tiny x1, 3 it on pCLE LR (TLI)"
    assert list(napari_cycsr.models_in_session()) == [name]
    (saved,) = saved_models(models_folder)
    assert saved.name == name and saved.path.parent == models_folder
    for part in ("preset tiny", "x1", "px apart", "trained on pCLE LR (TLI) (256x256)",
                 "target natural", "3 iterations"):  # fmt: skip
        assert part in saved.details
    # a second run never replaces the first one's name
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert list(napari_cycsr.models_in_session()) == [f"{name} (2)", name]
    assert len(saved_models(models_folder)) == 2

    # the Super-resolve widget lists the session's and the folder's models, with details
    _, sr_widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Super-resolve")
    labels = [sr_widget.model.native.itemText(i) for i in range(sr_widget.model.native.count())]
    assert labels[:2] == [f"{name} (2)", name]
    assert sum("[saved: " in label for label in labels) == 2
    sr_widget.model.value = saved.path
    assert "3 iterations" in sr_widget.details.value


def test_mismatched_layers_are_refused_before_any_work(setup, qtbot, errors, registry):
    viewer, widget = setup
    _quick(widget, 2)
    # fibres of the 256 x 256 sample with a 384 x 384 frame
    big = viewer.add_image(np.random.default_rng(0).random((384, 384), np.float32), name="big")
    widget.lr_layers.value = [big]
    widget.start_button.native.click()
    assert "were found on a 256x256 image but 'big' is 384x384" in errors[-1]
    # LR layers of different sizes with one fibres layer
    widget.lr_layers.value = [viewer.layers["pCLE LR (TLI)"], big]
    widget.start_button.native.click()
    assert "different sizes" in errors[-1] and "384x384" in errors[-1]
    assert widget.worker is None and "CycSR preview" not in viewer.layers


def test_closing_the_dock_stops_training_and_blocks_a_second_run(
    make_napari_viewer, qtbot, errors, registry, tmp_path
):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Train")
    _quick(widget, 100_000)
    widget.model_path.value = tmp_path / "m.safetensors"
    widget.start_button.native.click()
    qtbot.waitUntil(lambda: widget.trainer is not None and widget.trainer.iteration >= 1,
                    timeout=60_000)  # fmt: skip
    runner = widget.runner
    viewer.window.remove_dock_widget(dock)  # the user closes the panel
    assert runner.cancelled
    # a reopened Train panel cannot start a second run while the first one stops
    _, again = viewer.window.add_plugin_dock_widget("napari-cycsr", "Train")
    if runner.busy:
        _quick(again, 2)
        again.start_button.native.click()
        assert "still stopping" in errors[-1]
    qtbot.waitUntil(lambda: not runner.busy, timeout=60_000)
    assert widget.trainer.iteration < 100_000
    assert (tmp_path / "m_checkpoints" / "checkpoint.safetensors").is_file()
    assert (tmp_path / "m.safetensors").is_file()  # nothing lost
    assert [e for e in errors if "still stopping" not in e] == []


def test_closing_the_viewer_while_training_raises_nothing(make_napari_viewer, qtbot, registry):
    """Closing the viewer mid-run: the worker stops and touches no deleted Qt object (pytest-qt
    fails the test on any exception raised in a Qt callback)."""
    from qtpy.QtCore import QThreadPool

    viewer = make_napari_viewer()
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Train")
    _quick(widget, 100_000)
    widget.form.preview_every.value = 1
    widget.start_button.native.click()
    qtbot.waitUntil(lambda: len(widget.plot.iterations) >= 2, timeout=60_000)
    runner = widget.runner
    viewer.close()
    assert QThreadPool.globalInstance().waitForDone(60_000)
    qtbot.wait(200)  # deliver the worker's last signals
    assert not runner.alive
    assert widget.trainer.iteration < 100_000


def test_video_layer_trains_with_the_multi_frame_consistency(
    make_napari_viewer, qtbot, errors, registry, monkeypatch
):
    """ "learn from video" on a video layer: the frames are registered and fused in the worker
    and the run reports the multi-frame term against paired fused targets; a single image
    is refused before any work."""
    import napari_cycsr.workflows as workflows

    viewer = make_napari_viewer()
    viewer.open_sample("napari-cycsr", "synthetic_pcle_video")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Train")
    widget.lr_layers.value = [viewer.layers["pCLE video (TLI)"]]
    widget.fibres.value = viewer.layers["video fibres"]
    _quick(widget, 2)
    widget.form.video.value = True
    calls = []
    real = workflows.video_training
    monkeypatch.setattr(
        workflows, "video_training", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors == []
    assert calls == [1]
    config = widget.trainer.config
    assert (config.w_multi, config.target, config.w_pix) == (1.0, "paired", 1.0)
    assert np.isfinite(widget.plot.values["l_multi"]).all()
    assert {"l_multi", "l_pix", "l_vec"} <= set(_legend(widget.plot))

    viewer.add_image(viewer.layers["pCLE video (TLI)"].data[0], name="one frame")
    widget.lr_layers.value = [viewer.layers["one frame"]]
    widget.start_button.native.click()
    assert "'one frame' is a single image" in errors[-1]
    assert widget.worker is None and calls == [1]


# --- fine-tuning from the widget, and the loss legend ------------------------------------------


def _legend(plot):
    return [] if plot.legend is None else [t.get_text() for t in plot.legend.get_texts()]


def _entries(combo):
    return [combo.native.itemText(i) for i in range(combo.native.count())]


def _weights(model):
    return np.concatenate(
        [v.detach().numpy().ravel() for v in model.generator.state_dict().values()]
    )


def test_loss_plot_draws_only_the_losses_the_run_has(qtbot):
    from napari_cycsr._widgets.loss_plot import LossPlot

    plot = LossPlot(min_interval=0.0)
    qtbot.addWidget(plot)
    assert _legend(plot) == [] and plot.lines == {}
    single = {"l_vec": 0.5, "l_adv": 0.7, "l_reg": 0.0, "loss_d": 1.3, "loss_g": 2.0}
    plot.append(1, single, total=4)
    plot.append(2, single, total=4)
    # a zero loss has nothing to draw on a log axis; no multi-frame, no pixel term
    assert _legend(plot) == ["l_vec", "l_adv", "loss_d"]
    assert set(plot.values) == {"l_vec", "l_adv", "l_reg", "loss_d"}
    colour = plot.lines["l_adv"].get_color()
    # a term that appears later gets its curve, in legend order, NaN before it appeared
    plot.append(3, {**single, "l_multi": 0.2})
    assert _legend(plot) == ["l_vec", "l_multi", "l_adv", "loss_d"]
    assert np.isnan(plot.values["l_multi"][:2]).all() and plot.values["l_multi"][2] == 0.2
    assert plot.lines["l_adv"].get_color() == colour  # each loss keeps its colour
    plot.clear(total=10)
    assert _legend(plot) == [] and plot.values == {} and plot.iterations == []
    plot.append(1, single)
    assert _legend(plot) == ["l_vec", "l_adv", "loss_d"]


def test_start_from_a_pretrained_model_fine_tunes_it(setup, qtbot, errors, registry, models_folder):
    """The "start from" menu with a pretrained model: its network is shown and locked, its
    loss settings are carried (a weight changed in the form wins), the run starts from its
    weights and keeps its intensity scaling, and the result says what it was fine-tuned from.
    Resume continues it; back to "from scratch" frees the form again."""
    from napari_cycsr import pretrained
    from napari_cycsr._widgets.train import FROM_SCRATCH

    viewer, widget = setup
    _quick(widget, 2)
    form = widget.form
    form.preset.value = "default"
    entries = _entries(widget.start_from)
    assert entries[0] == FROM_SCRATCH and "pretrained: default" in entries
    assert entries[-1] == FROM_FILE and widget.start_from.value == FROM_SCRATCH
    assert widget.start_details.native.isHidden()

    # the single-frame model: its carried settings (w_res 1) differ from the defaults
    start = pretrained("frames")
    recipe = start.metadata["train_config"]
    widget.start_from.value = "pretrained: frames"
    # the model's network is shown and cannot be changed; its loss weights fill the form
    assert (form.preset.value, form.scale.value) == ("tiny", 1)
    assert not form.preset.enabled and not form.scale.enabled
    assert form.w_reg.value == pytest.approx(recipe["w_reg"])
    assert "carries its loss settings" in widget.start_details.value
    assert not widget.start_details.native.isHidden()
    details = widget.start_details.value
    assert "w_res=1.0" in details and "vec_tolerance=1.5" in details
    form.w_adv.value = 0.002  # the user's own choice wins over the carried one
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors == []
    config = widget.trainer.config
    assert (config.preset, config.w_res, config.vec_tolerance, config.augment_lr) == (
        "tiny", recipe["w_res"], recipe["vec_tolerance"], recipe["augment_lr"]
    )  # fmt: skip
    assert config.w_adv == pytest.approx(0.002) and config.noise_level is None
    # the run kept the pretrained model's intensity scaling, not the layer's own
    assert widget.trainer.normalisation == start.normalisation
    model = widget.model
    assert model.metadata["initialised_from"] == "frames"
    assert model.metadata["train_config"]["w_res"] == recipe["w_res"]
    name = "tiny x1, 2 it on pCLE LR (TLI), fine-tuned from frames"
    assert registry.names() == [name]
    assert "fine-tuning from 'frames'; carried from it:" in widget.status.value
    assert "w_res=1.0" in widget.status.value and "fine-tuned from frames" in widget.status.value
    assert "l_multi" not in _legend(widget.plot) and "l_vec" in _legend(widget.plot)
    # the fine-tuned model is offered to start from in turn
    assert name in _entries(widget.start_from)

    # Resume continues the fine-tuned run (its checkpoint), and its name still says so
    form.iterations.value = 3
    widget.resume_button.native.click()
    _wait(qtbot, widget)
    assert errors == [] and widget.trainer.iteration == 3
    assert registry.names()[0] == "tiny x1, 3 it on pCLE LR (TLI), fine-tuned from frames"

    # from scratch again: the form is free and holds the user's weights from before
    widget.start_from.value = FROM_SCRATCH
    assert form.preset.enabled and form.scale.enabled and widget.start_details.native.isHidden()
    assert form.w_adv.value == pytest.approx(1e-4)
    form.preset.value, form.iterations.value = "tiny", 2
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors == []
    scratch = widget.model
    assert "initialised_from" not in scratch.metadata or not scratch.metadata["initialised_from"]
    assert widget.trainer.normalisation != start.normalisation
    # same seed, same data: only the start differs; the fine-tuned weights stay near the
    # pretrained ones, the scratch run's do not
    tuned = registry.get("tiny x1, 3 it on pCLE LR (TLI), fine-tuned from frames")
    near = np.abs(_weights(tuned) - _weights(start)).mean()
    far = np.abs(_weights(scratch) - _weights(start)).mean()
    assert near < 0.2 * far


def test_start_from_the_video_model_with_learn_from_video_keeps_its_objective(
    make_napari_viewer, qtbot, errors, registry, models_folder
):
    """The video-trained default fine-tuned with "learn from video" is a paired run (the
    fused video is its target), as ``cycsr train --video --init default``: it keeps its own
    objective. Without video it is held to itself (w_anchor 10). The details follow the checkbox
    ticked after the model was chosen, and a weight changed by hand wins either way."""
    from napari.layers import Layer

    from napari_cycsr import pretrained
    from napari_cycsr._sample_data import synthetic_pcle_video
    from napari_cycsr.config import UNPAIRED_FINE_TUNE_W_ANCHOR, fine_tune_settings

    viewer = make_napari_viewer()
    for data, meta, kind in synthetic_pcle_video(n_frames=4):  # a short video: a quick test
        viewer.add_layer(Layer.create(data, meta, kind))
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Train")
    widget.lr_layers.value = [viewer.layers["pCLE video (TLI)"]]
    widget.fibres.value = viewer.layers["video fibres"]
    _quick(widget, 1)
    form = widget.form
    start = pretrained("default")
    recipe = start.metadata["train_config"]
    # what this test is about: a model trained against paired targets with its own w_res 0
    assert (recipe["target"], recipe["w_pix"], recipe["w_res"]) == ("paired", 1.0, 0.0)

    widget.start_from.value = "pretrained: default"  # chosen first, video ticked after
    assert "w_anchor=10.0" in widget.start_details.value  # single frames: held to itself
    form.w_adv.value = 0.002  # the user's own weight
    form.video.value = True
    details = widget.start_details.value
    assert "w_anchor" not in details and "keeps its own objective" in details
    assert form.w_adv.value == pytest.approx(0.002)  # the toggle keeps the user's weight
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors == []
    config = widget.trainer.config
    assert (config.target, config.w_pix, config.w_multi) == ("paired", 1.0, 1.0)
    assert config.w_res == 0.0 and config.w_anchor == 0.0
    assert config.w_adv == pytest.approx(0.002)
    # the same settings as the CLI's rule (--video passes w_pix and w_multi, --set w_adv)
    _, cli = fine_tune_settings(
        start.generator.config, recipe, {"w_pix": 1.0, "w_multi": 1.0, "w_adv": 0.002}
    )
    assert {key: getattr(config, key) for key in cli} == cli
    assert "fine-tuning from 'default'" in widget.status.value
    assert "w_anchor" not in widget.status.value
    assert widget.model.metadata["train_config"]["w_anchor"] == 0.0

    # "learn from video" off again: no paired target, the anchor to the model is back
    form.video.value = False
    assert "w_anchor=10.0" in widget.start_details.value
    assert form.w_adv.value == pytest.approx(0.002)
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors == []
    config = widget.trainer.config
    assert config.w_anchor == UNPAIRED_FINE_TUNE_W_ANCHOR and config.w_pix == 0.0
    assert config.w_res == 0.0
    assert config.target == "natural" and config.w_adv == pytest.approx(0.002)
    assert "w_anchor=10.0" in widget.status.value


def test_start_from_a_model_file_and_a_bad_one(setup, qtbot, errors, registry, tmp_path):
    """A model file to start from: a file that cannot be read is refused with a message and
    nothing starts; a good file (another network size) sets the form to its network."""
    from napari_cycsr.config import get_preset
    from napari_cycsr.io import save_model
    from napari_cycsr.models import SRModel

    viewer, widget = setup
    _quick(widget, 2)
    widget.start_from.value = FROM_FILE
    assert not widget.start_file.native.isHidden()
    widget.start_button.native.click()
    assert "choose the model file to start from" in errors[-1]
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model at all")
    widget.start_file.value = junk
    assert widget.start_details.value.startswith("cannot start from this model")
    assert widget.form.preset.enabled  # nothing was taken from it
    widget.start_button.native.click()
    assert "cannot start from the model 'junk'" in errors[-1]
    assert widget.worker is None and widget.trainer is None and registry.names() == []

    other = SRModel.new(get_preset("default", scale=2))
    save_model(other, tmp_path / "big.safetensors")
    widget.start_file.value = tmp_path / "big.safetensors"
    assert (widget.form.preset.value, widget.form.scale.value) == ("default", 2)
    assert "no loss settings recorded" in widget.start_details.value
    assert not widget.form.scale.enabled


def test_fine_tuning_a_model_of_another_fibre_spacing_resamples_and_says_so(
    setup, qtbot, errors, registry, tmp_path
):
    """Starting from a model that learned at another fibre spacing, the frames are resampled
    to it (as Super-resolve runs it), the status says so, the model records that spacing,
    and the preview still sits over its crop of the layer, at the layer's resolution."""
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.io import save_model
    from napari_cycsr.models import SRModel

    viewer, widget = setup
    _quick(widget, 2)
    widget.form.preview_every.value = 1
    lr = viewer.layers["pCLE LR (TLI)"]
    frames_spacing = FibreBundle(viewer.layers["fibres"].data, lr.data.shape).spacing
    start = SRModel.new("tiny")
    start.metadata["fibre_spacing"] = 1.5 * frames_spacing
    save_model(start, tmp_path / "start.safetensors")
    widget.start_from.value = FROM_FILE
    widget.start_file.value = tmp_path / "start.safetensors"
    # said before Start, under the model's details
    zoom = start.metadata["fibre_spacing"] / frames_spacing
    assert (
        f"frames resampled x{zoom:.2f} to its fibre spacing of {1.5 * frames_spacing:.2f} px "
        f"(theirs: {frames_spacing:.2f} px, fibres 'fibres')"
    ) in widget.start_details.value
    widget.start_button.native.click()
    _wait(qtbot, widget)
    assert errors == []
    trainer = widget.trainer
    assert trainer.spacing_zooms == [pytest.approx(1.5, rel=0.05)]
    assert "frames resampled x1.5" in widget.status.value
    assert widget.model.metadata["fibre_spacing"] == pytest.approx(1.5 * frames_spacing, rel=0.05)
    preview = viewer.layers[PREVIEW_NAME]
    y0, x0, h, w = trainer.preview_crop
    assert y0 + h <= lr.data.shape[0] and x0 + w <= lr.data.shape[1]
    assert preview.data.shape == (h, w) and preview.data.std() > 0
    np.testing.assert_allclose(preview.scale, lr.scale)
    np.testing.assert_allclose(preview.translate, (y0, x0))
    # a model of the frames' own spacing: nothing to resample, and the line says so
    start.metadata["fibre_spacing"] = 1.02 * frames_spacing
    save_model(start, tmp_path / "same.safetensors")
    widget.start_file.value = tmp_path / "same.safetensors"
    assert "frames resampled" not in widget.start_details.value
    assert f"is the frames' ({frames_spacing:.2f} px)" in widget.start_details.value
    # from scratch: no start model, no line
    widget.start_from.value = FROM_SCRATCH
    assert "fibre spacing" not in widget.start_details.value
