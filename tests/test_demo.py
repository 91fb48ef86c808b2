"""Tests of the one-command demo (tiny settings: a few seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_cycsr.cli import main
from napari_cycsr.consistency import DEFAULT_TOLERANCE, estimate_noise
from napari_cycsr.demo import BUILTIN_IMAGES, DemoEvent, builtin_image, resize_longest, run_demo
from napari_cycsr.fibres import FibreBundle
from napari_cycsr.inference import super_resolve

TINY = {"preset": "tiny", "size": 64, "iterations": 2, "batch_size": 2, "patch": 32}


@pytest.fixture
def one_thread():
    """One torch thread (much faster on a shared machine); torch's setting restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield ["--threads", "1"]
    torch.set_num_threads(before)


def test_builtin_images_are_grey_unit_float():
    for name in ("camera", "astronaut", "horse"):
        image = builtin_image(name, size=48)
        assert image.ndim == 2 and max(image.shape) == 48
        assert image.dtype == np.float32
        assert 0.0 <= image.min() < image.max() <= 1.0
    assert builtin_image("coffee").shape == (400, 600)
    with pytest.raises(ValueError, match="unknown built-in image"):
        builtin_image("lena")
    assert "camera" in BUILTIN_IMAGES


def test_resize_longest_keeps_aspect_and_values():
    image = np.zeros((100, 50), np.float32)
    image[:, 25:] = 1.0
    out = resize_longest(image, 40)
    assert out.shape == (40, 20) and out.dtype == np.float32
    assert out[:, :8].max() < 0.05 and out[:, 12:].min() > 0.95
    assert image.max() == 1.0  # input untouched
    with pytest.raises(ValueError, match="2-D"):
        resize_longest(np.zeros((2, 20, 20)), 16)
    with pytest.raises(ValueError, match="size"):
        resize_longest(image, 4)


def test_run_demo_writes_figure_table_and_loadable_model(tmp_path, one_thread):
    from napari_cycsr.io import load_model

    events: list[DemoEvent] = []
    result = run_demo(tmp_path / "demo", device="cpu", progress=events.append, **TINY)
    out = tmp_path / "demo"
    for name in ("demo.png", "metrics.md", "metrics.json", "model.safetensors", "hr.tif",
                 "lr.tif", "sr.tif", "fibres.csv", "values.npy"):  # fmt: skip
        assert (out / name).is_file(), name
    # the figure is a real picture with one column per method and the ground truth
    with Image.open(out / "demo.png") as figure:
        width, height = figure.size
    assert width > 2 * height > 200
    # the table has the four methods and the metrics against the true image
    assert [row["method"] for row in result.rows] == [
        "TLI", "Wiener", "Sharpening", "TLI + projection", "CycSR", "CycSR + projection",
    ]  # fmt: skip
    # the projections enforce the fibre values up to their noise (estimated from the
    # values): a cycle error below the TLI's and within the band of 1.5 noise levels
    by = {row["method"]: row for row in result.rows}
    with Image.open(out / "lr.tif") as lr:
        shape = (lr.height, lr.width)
    bundle = FibreBundle.from_csv(out / "fibres.csv", shape)
    sigma = estimate_noise(np.load(out / "values.npy"), bundle)
    band = (DEFAULT_TOLERANCE * sigma) ** 2
    assert by["TLI + projection"]["cycle_error"] < min(by["TLI"]["cycle_error"] / 2, band)
    assert by["CycSR + projection"]["cycle_error"] < band
    assert (out / "sr_projected.tif").is_file()
    text = (out / "metrics.md").read_text()
    for word in ("TLI", "Wiener", "Sharpening", "CycSR", "psnr", "ssim", "gcf", "tot_cs"):
        assert word in text
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["settings"]["iterations"] == 2 and saved["settings"]["preset"] == "tiny"
    for row in result.rows:
        assert 0 < row["ssim"] <= 1 and np.isfinite(row["psnr"])
    # the model file is the trained model and reproduces the written SR image
    model = load_model(result.model_path)
    assert model.metadata["iteration"] == 2
    assert model.config.channels == 8  # the tiny preset

    tli = result.images["TLI"]
    bundle = FibreBundle.from_csv(out / "fibres.csv", shape=tli.shape)
    sr = super_resolve(model, tli, device="cpu", mask=bundle.fov_mask)
    np.testing.assert_allclose(sr, result.images["CycSR"], atol=1e-4)
    # progress: every stage, training step by step
    stages = [e.stage for e in events]
    for stage in ("simulate", "train", "super-resolve", "evaluate", "write"):
        assert stage in stages
    train_steps = [e.step for e in events if e.stage == "train"]
    assert train_steps == [0, 1, 2]
    assert all(e.losses for e in events if e.stage == "train" and e.step > 0)


def test_demo_command(tmp_path, capsys, one_thread):
    args = ["demo", "--out", str(tmp_path / "d"), "--quick", "--image", "brick", "--quiet"]
    args += ["--preset", "tiny", "--size", "64", "--iterations", "1", "--patch", "32"]
    assert main([*args, "--batch-size", "2", "--device", "cpu", *one_thread]) == 0
    text = capsys.readouterr().out
    assert "| CycSR |" in text and "demo.png" in text
    assert (tmp_path / "d" / "demo.png").is_file()


def test_demo_bad_settings_fail_before_any_work(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--preset", "huge"]) == 2
    assert main(["demo", "--out", str(tmp_path / "d"), "--image", "lena"]) == 2
    with pytest.raises(ValueError, match="patch"):
        run_demo(tmp_path / "e", patch=8, **{k: v for k, v in TINY.items() if k != "patch"})
    assert not (tmp_path / "e").exists()
    with pytest.raises(ValueError, match="iterations"):
        run_demo(tmp_path / "e", iterations=0)


def test_demo_never_replaces_an_earlier_result(tmp_path, one_thread):
    out = tmp_path / "demo_out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"38 minutes of training")
    with pytest.raises(FileExistsError, match="earlier demo.*--overwrite"):
        run_demo(out, device="cpu", **TINY)
    assert (out / "model.safetensors").read_bytes() == b"38 minutes of training"
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    result = run_demo(out, device="cpu", overwrite=True, **TINY)
    assert result.model_path.read_bytes() != b"38 minutes of training"
