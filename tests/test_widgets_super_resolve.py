"""Qt tests of the Super-resolve widget, through the plugin manifest."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
torch = pytest.importorskip("torch")

from napari_cycsr._pretrained import list_pretrained  # noqa: E402
from napari_cycsr._widgets.super_resolve import FROM_FILE, PRETRAINED  # noqa: E402
from napari_cycsr.io import save_model  # noqa: E402
from napari_cycsr.models import SRModel, get_preset  # noqa: E402

pytestmark = pytest.mark.qt


def _model(scale=1, seed=0, **metadata):
    torch.manual_seed(seed)
    return SRModel.new(get_preset("tiny", scale=scale), metadata=dict(metadata))


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", "Super-resolve")
    return widget


def _spy_on_inference(monkeypatch, option):
    """The values of ``option`` that the widget passes to ``iter_super_resolve``, call by call."""
    from napari_cycsr import inference

    seen = []
    real = inference.iter_super_resolve

    def spy(*args, **kwargs):
        seen.append(kwargs.get(option))
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "iter_super_resolve", spy)
    return seen


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
    sr = viewer.layers["video [SR my model]"]
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
    sr = viewer.layers["lr [SR x2]"]
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
    out = viewer.layers["lazy [SR m]"].data
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
    assert not any(layer.name.startswith("long [SR") for layer in viewer.layers)
    assert widget.status.value.startswith("cancelled")
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_bad_input_shows_message(make_napari_viewer, qtbot, errors, registry, tmp_path):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    widget.run_button.native.click()  # nothing chosen
    assert "choose the image" in errors[-1]

    rgb = viewer.add_image(np.indices((16, 16, 3)).sum(0).astype(np.uint8), rgb=True, name="rgb")
    widget.image.value = rgb
    widget.run_button.native.click()
    assert "colour image" in errors[-1] and "Convert to grey" in errors[-1]

    grey = viewer.add_image(np.random.default_rng(0).random((48, 48)), name="grey")
    widget.image.value = grey
    widget.model.value = FROM_FILE
    widget.model_file.value = tmp_path / "missing.safetensors"
    widget.run_button.native.click()
    assert "model file" in errors[-1]

    # a model trained on fibres 3 px apart, on an image whose fibres are 8 px apart: the
    # image is resampled to the model's fibre spacing and back (no error, same shape)
    registry.register("fine", _model(fibre_spacing=3.0))
    yy, xx = np.mgrid[4:44:8, 4:44:8]
    viewer.add_points(np.c_[yy.ravel(), xx.ravel()].astype(float), name="coarse fibres")
    widget.model.value = "fine"
    widget.fibres.value = viewer.layers["coarse fibres"]
    count = len(errors)
    _run(qtbot, widget)
    assert len(errors) == count
    assert viewer.layers["grey [SR fine + projection]"].data.shape == (48, 48)


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
    projected = np.asarray(viewer.layers["tli [SR m + projection]"].data)
    widget.consistency.value = False
    _run(qtbot, widget)
    assert errors == []
    plain = np.asarray(viewer.layers["tli [SR m]"].data)
    b, v = sim.bundle, sim.values
    # the projection is noise-aware: consistent with the values up to their noise level
    from napari_cycsr.consistency import DEFAULT_TOLERANCE, estimate_noise

    band = (DEFAULT_TOLERANCE * estimate_noise(v, b)) ** 2
    assert cycle_error(projected, b, v) < min(band, cycle_error(plain, b, v) / 2)
    assert np.all(projected[~b.fov_mask] == 0) and np.all(plain[~b.fov_mask] == 0)
    widget.fibres.value = None
    assert not widget.consistency.value and not widget.consistency.enabled


def test_precision_menu_is_passed_to_inference(
    make_napari_viewer, qtbot, errors, registry, monkeypatch
):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(3).random((24, 24)), name="lr")
    registry.register("m", _model())
    widget = _dock(viewer)
    assert widget.precision.value == "auto" and widget.precision.tooltip
    seen = _spy_on_inference(monkeypatch, "precision")
    widget.image.value = layer
    widget.device.value = "cpu"
    widget.precision.value = "fp32"
    _run(qtbot, widget)
    assert errors == [] and seen == ["fp32"]
    assert viewer.layers["lr [SR m]"].data.shape == (24, 24)


def test_self_ensemble_menu_sets_the_result(
    make_napari_viewer, qtbot, errors, registry, monkeypatch, tmp_path
):
    from napari_cycsr import inference
    from napari_cycsr._imageio import read_image, write_image
    from napari_cycsr.config import DEFAULT_ENSEMBLE

    model = _model(seed=5)
    with torch.no_grad():  # the untrained tail is zero (output = input): give it weights
        torch.nn.init.normal_(model.generator.tail.weight, std=0.05)
    viewer = make_napari_viewer()
    image = np.random.default_rng(5).random((28, 36)).astype(np.float32)
    layer = viewer.add_image(image, name="lr")
    registry.register("m", model)
    widget = _dock(viewer)
    assert widget.ensemble.value == str(DEFAULT_ENSEMBLE)
    assert "quarter turns" in widget.ensemble.tooltip
    widget.image.value = layer
    widget.device.value = "cpu"
    widget.precision.value = "fp32"
    results = {}
    for size in ("1", "8"):
        widget.ensemble.value = size
        _run(qtbot, widget)
        assert errors == []
        results[size] = viewer.layers[-1].data
        assert viewer.layers[-1].metadata["cycsr_ensemble"] == int(size)
        expected = inference.super_resolve(model, image, device="cpu", precision="fp32",
                                           ensemble=int(size))  # fmt: skip
        np.testing.assert_allclose(results[size], expected, atol=1e-5)
    assert np.abs(results["1"] - results["8"]).max() > 1e-3
    # a folder of files gets the menu's choice too
    folder = tmp_path / "frames"
    folder.mkdir()
    write_image(folder / "f.tif", image)
    seen = _spy_on_inference(monkeypatch, "ensemble")
    widget.source.value = "folder"
    widget.folder.value = folder
    widget.ensemble.value = "2"
    _run(qtbot, widget)
    assert errors == [] and seen == [2]
    expected = inference.super_resolve(model, image, device="cpu", precision="fp32", ensemble=2)
    np.testing.assert_allclose(read_image(folder / "f_sr.tif"), expected, atol=1e-5)


# --- issue 11: batch, models folder, grey RGB, names ------------------------------------------


def test_several_layers_and_rgba_in_one_run(make_napari_viewer, qtbot, errors, registry, tmp_path):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(3)
    grey = rng.random((32, 40)).astype(np.float32)
    rgba = np.zeros((32, 40, 4), np.uint8)
    rgba[..., :3] = (grey * 255).astype(np.uint8)[..., None]
    rgba[..., 3] = 255
    a = viewer.add_image(grey, name="a", scale=(2, 2))
    b = viewer.add_image(rgba, rgb=True, name="b camera")
    registry.register("m", _model())
    widget = _dock(viewer)
    widget.source.value = "layers"
    widget.layers.value = [a, b]
    widget.device.value = "cpu"
    widget.out_folder.value = tmp_path / "results"
    _run(qtbot, widget)
    assert errors == []
    assert widget.status.value.startswith("finished: 2 layer(s)")
    out_a, out_b = viewer.layers["a [SR m]"], viewer.layers["b camera [SR m]"]
    assert out_a.data.shape == out_b.data.shape == (32, 40)
    assert tuple(out_a.scale) == (2, 2) and out_a.metadata["cycsr_source"] == "a"
    written = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert written == ["a_sr.tif", "b camera_sr.tif"]
    np.testing.assert_array_equal(b.data[..., 3], 255)  # the input is untouched


def test_folder_batch_never_overwrites(make_napari_viewer, qtbot, errors, registry, tmp_path):
    from napari_cycsr._imageio import read_image, write_image

    viewer = make_napari_viewer()
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for name in ("f1.tif", "f2.tif", "f3.npy"):
        write_image(folder / name, rng.random((24, 24)).astype(np.float32))
    write_image(folder / "f2_sr.tif", np.zeros((24, 24), np.float32))  # an earlier result
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    registry.register("m", _model())
    widget = _dock(viewer)
    widget.source.value = "folder"
    widget.folder.value = folder
    widget.device.value = "cpu"
    _run(qtbot, widget)
    assert errors == []
    assert widget.status.value.startswith("finished: 3 file(s) written")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["f1.tif", "f1_sr.tif", "f2.tif", "f2_sr-2.tif", "f2_sr.tif", "f3.npy",
                     "f3_sr.npy"]  # fmt: skip
    for name, content in before.items():
        assert (folder / name).read_bytes() == content  # inputs and earlier results kept
    assert read_image(folder / "f1_sr.tif").shape == (24, 24)
    assert [layer.name for layer in viewer.layers] == []  # files, not layers

    # into a chosen folder; the fibres must fit every image of the folder
    out = tmp_path / "out"
    widget.out_folder.value = out
    viewer.add_points(np.array([[2.0, 2], [2, 40], [40, 2], [40, 40]]), name="big fibres")
    widget.fibres.value = viewer.layers["big fibres"]
    widget.run_button.native.click()
    assert "belong to a 41x41 image" in errors[-1] and not out.exists()
    widget.fibres.value = None
    _run(qtbot, widget)
    assert sorted(p.name for p in out.iterdir()) == ["f1_sr.tif", "f2_sr.tif", "f3_sr.npy"]


def test_folder_batch_cancel_keeps_finished_files(make_napari_viewer, qtbot, errors, registry,
                                                  tmp_path):  # fmt: skip
    from napari_cycsr._imageio import write_image

    viewer = make_napari_viewer()
    folder = tmp_path / "long"
    folder.mkdir()
    for i in range(6):
        write_image(folder / f"v{i}.tif", np.zeros((30, 64, 64), np.float32))
    registry.register("m", _model())
    widget = _dock(viewer)
    widget.source.value = "folder"
    widget.folder.value = folder
    widget.out_folder.value = tmp_path / "out"
    widget.run_button.native.click()
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert errors == []
    assert widget.status.value.startswith("cancelled")
    written = list((tmp_path / "out").glob("*.tif")) if (tmp_path / "out").exists() else []
    assert len(written) < 6
    assert not list((tmp_path / "out").glob(".*")) if (tmp_path / "out").exists() else True


def test_models_folder_is_listed_with_details(make_napari_viewer, qtbot, errors, registry,
                                              models_folder):  # fmt: skip
    from napari_cycsr.models_store import save_to_folder

    model = _model(fibre_spacing=2.5, iteration=120, train_config={"preset": "tiny", "scale": 1,
                   "target": "natural"}, training_data=["sample (256x256)"])  # fmt: skip
    path = save_to_folder(model, "from last week")
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(0).random((32, 32), np.float32), name="x")
    widget = _dock(viewer)
    labels = [widget.model.native.itemText(i) for i in range(widget.model.native.count())]
    shipped = [PRETRAINED + m["name"] for m in list_pretrained()]  # the package's own
    assert labels == [f"from last week [saved: {path.name}]", *shipped, FROM_FILE]
    assert widget.model.value == path
    details = widget.details.value
    for part in ("preset tiny", "x1", "fibres 2.50 px apart", "trained on sample (256x256)",
                 "120 iterations"):  # fmt: skip
        assert part in details
    widget.image.value = layer
    widget.device.value = "cpu"
    _run(qtbot, widget)
    assert errors == [] and "x [SR from_last_week]" in viewer.layers


def test_pretrained_models_are_offered(make_napari_viewer, qtbot, errors, monkeypatch, tmp_path):
    import json

    from napari_cycsr import _pretrained
    from napari_cycsr._widgets.super_resolve import PRETRAINED
    from napari_cycsr.io import save_model
    from napari_cycsr.models import SRModel

    save_model(SRModel.new("tiny"), tmp_path / "tiny.safetensors")
    entry = {"name": "tiny", "file": "tiny.safetensors", "description": "d", "trained_on": "t"}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [entry]}))
    monkeypatch.setattr(_pretrained, "_folder", lambda: tmp_path)
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(1).random((32, 32)), name="img")
    widget = _dock(viewer)
    widget.reset_choices()
    assert PRETRAINED + "tiny" in widget.model.choices
    widget.image.value = layer
    widget.model.value = PRETRAINED + "tiny"
    widget.device.value = "cpu"
    _run(qtbot, widget)
    assert errors == []
    assert viewer.layers["img [SR tiny]"].data.shape == (32, 32)


def test_worker_leaves_one_cpu_to_the_gui(
    make_napari_viewer, qtbot, errors, registry, monkeypatch, tmp_path
):
    """Layers and folders run with _device.gui_threads() torch threads, not the automatic
    choice (which takes every idle core and stalls napari's GUI thread on a small machine)."""
    from napari_cycsr import _device, inference
    from napari_cycsr._imageio import write_image
    from napari_cycsr._widgets import super_resolve

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(5).random((24, 24)), name="lr")
    registry.register("m", _model())
    widget = _dock(viewer)
    widget.image.value = layer
    widget.device.value = "cpu"
    seen = []  # (threads asked for, torch's threads while the windows run)
    real = inference.iter_super_resolve

    def spy(*args, **kwargs):
        def gen():
            work = real(*args, **kwargs)
            first = next(work)
            seen.append((kwargs.get("threads", "missing"), torch.get_num_threads()))
            yield first
            return (yield from work)

        return gen()

    monkeypatch.setattr(inference, "iter_super_resolve", spy)
    _run(qtbot, widget)
    assert errors == [] and seen == [(_device.gui_threads(),) * 2]
    assert viewer.layers["lr [SR m]"].data.shape == (24, 24)

    # a folder of images, with the policy's value changed: the widget asks it at each run
    other = _device.gui_threads() + 1
    monkeypatch.setattr(super_resolve, "gui_threads", lambda: other)
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("a.tif", "b.tif"):
        write_image(folder / name, np.random.default_rng(6).random((24, 24)).astype(np.float32))
    widget.source.value = "folder"
    widget.folder.value = folder
    seen.clear()
    _run(qtbot, widget)
    assert errors == [] and seen == [(other, other)] * 2
    assert sorted(p.name for p in folder.iterdir()) == ["a.tif", "a_sr.tif", "b.tif", "b_sr.tif"]


def test_noise_level_from_the_video(make_napari_viewer, qtbot, errors, registry):
    """'Noise level from the video': the stack is registered and the projection stops at the
    noise estimated from the video (estimate_video_noise), recorded in the result layer and
    said in the status; single images are refused; off without the fibre consistency."""
    from napari.layers import Layer

    from napari_cycsr._sample_data import synthetic_pcle_video
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.video import estimate_video_noise, frame_values, register

    viewer = make_napari_viewer()
    for data, meta, kind in synthetic_pcle_video(n_frames=4):
        viewer.add_layer(Layer.create(data, meta, kind))
    model = _model()
    registry.register("m", model)
    widget = _dock(viewer)
    video = viewer.layers["pCLE video (TLI)"]
    widget.image.value = video
    widget.device.value = "cpu"
    assert not widget.video_noise.enabled  # no fibres, no projection
    widget.fibres.value = viewer.layers["video fibres"]
    assert widget.video_noise.enabled and not widget.video_noise.value
    widget.video_noise.value = True
    _run(qtbot, widget)
    assert errors == []
    result = viewer.layers[f"{video.name} [SR m + projection]"]
    sigma = result.metadata["cycsr_project_noise"]
    frames = np.asarray(video.data)
    from napari_cycsr._widgets._common import bundle_from_points

    bundle = bundle_from_points(viewer.layers["video fibres"], video)
    values = frame_values(frames, bundle, kind="reconstructed")
    assert sigma == pytest.approx(estimate_video_noise(values, bundle, register(frames, bundle)))
    assert f"noise of the fibre values from the video: {video.name} {sigma:.4g}" in (
        widget.status.value
    )
    expected = super_resolve(
        model, frames, device="cpu", mask=bundle.fov_mask, bundle=bundle, project_noise=sigma,
        spacing=bundle.spacing,
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(result.data), expected, atol=1e-5)
    # a single image is refused with a message, nothing added
    single = viewer.add_image(frames[0], name="one frame")
    widget.image.value = single
    widget.fibres.value = viewer.layers["video fibres"]
    widget.video_noise.value = True
    before = len(viewer.layers)
    widget.run_button.native.click()
    assert "needs stacks of at least 2 frames" in errors[-1] and "'one frame'" in errors[-1]
    errors.clear()
    assert widget.worker is None and len(viewer.layers) == before
    # without the consistency the option is off
    widget.consistency.value = False
    assert not widget.video_noise.enabled and not widget.video_noise.value
