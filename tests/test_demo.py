"""Tests of the one-command demo (tiny settings: a few seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_cycsr.cli import main
from napari_cycsr.config import recipe_losses
from napari_cycsr.consistency import DEFAULT_TOLERANCE, estimate_noise
from napari_cycsr.demo import (
    BUILTIN_IMAGES,
    DEMO_IMAGE,
    DemoEvent,
    builtin_image,
    resize_longest,
    run_demo,
)
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
    for name in ("camera", "astronaut", "horse", "motorcycle"):
        image = builtin_image(name, size=48)
        assert image.ndim == 2 and max(image.shape) == 48
        assert image.dtype == np.float32
        assert 0.0 <= image.min() < image.max() <= 1.0
    assert builtin_image("coffee").shape == (400, 600)
    with pytest.raises(ValueError, match="unknown built-in image"):
        builtin_image("lena")
    assert "camera" in BUILTIN_IMAGES and DEMO_IMAGE in BUILTIN_IMAGES
    # the motorcycle: the centre square of the stereo pair's left view, in grey
    assert builtin_image("motorcycle").shape == (500, 500)


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
    from napari_cycsr import pretrained
    from napari_cycsr.io import load_model

    events: list[DemoEvent] = []
    result = run_demo(tmp_path / "demo", device="cpu", progress=events.append, **TINY)
    out = tmp_path / "demo"
    for name in ("demo.png", "metrics.md", "metrics.json", "model.safetensors", "hr.tif",
                 "lr.tif", "sr.tif", "sr_pretrained.tif", "fibres.csv", "values.npy"):  # fmt: skip
        assert (out / name).is_file(), name
    # the figure is a real picture with one column per method and the ground truth
    with Image.open(out / "demo.png") as figure:
        width, height = figure.size
    assert width > 2 * height > 200
    # the table: baselines, the pretrained model as it ships, then fine-tuned, all in one run
    assert [row["method"] for row in result.rows] == [
        "TLI", "Wiener", "Sharpening", "TLI + projection", "Pretrained",
        "Pretrained + projection", "Fine-tuned", "Fine-tuned + projection",
    ]  # fmt: skip
    assert result.pretrained == "default"
    assert 0 < result.first_result_seconds < result.seconds
    # the projections enforce the fibre values up to their noise (estimated from the
    # values): a cycle error below the TLI's and within the band of 1.5 noise levels (at
    # 64 px the motorcycle's detail inflates the noise estimate, so the projection stops
    # early; the camera run below checks that it halves TLI's error on a smoother picture)
    by = {row["method"]: row for row in result.rows}
    with Image.open(out / "lr.tif") as lr:
        shape = (lr.height, lr.width)
    bundle = FibreBundle.from_csv(out / "fibres.csv", shape)
    sigma = estimate_noise(np.load(out / "values.npy"), bundle)
    band = (DEFAULT_TOLERANCE * sigma) ** 2
    assert by["TLI + projection"]["cycle_error"] < min(by["TLI"]["cycle_error"], band)
    assert by["Fine-tuned + projection"]["cycle_error"] < band
    assert by["Pretrained + projection"]["cycle_error"] < band
    assert (out / "sr_projected.tif").is_file()
    text = (out / "metrics.md").read_text()
    for word in ("TLI", "Wiener", "Sharpening", "Pretrained", "Fine-tuned", "psnr", "ssim",
                 "gcf", "tot_cs", "`default`"):  # fmt: skip
        assert word in text
    assert "never saw this picture" in text  # the default picture is held out
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["settings"]["iterations"] == 2 and saved["settings"]["preset"] == "tiny"
    assert saved["settings"]["pretrained"] == "default"
    for row in result.rows:
        assert 0 < row["ssim"] <= 1 and np.isfinite(row["psnr"])
    # "Pretrained" is the shipped model as it is, on the demo's frame
    tli = result.images["TLI"]
    bundle = FibreBundle.from_csv(out / "fibres.csv", shape=tli.shape)
    start = pretrained("default")
    sr_pre = super_resolve(start, tli, device="cpu", mask=bundle.fov_mask, spacing=bundle.spacing)
    np.testing.assert_allclose(sr_pre, result.images["Pretrained"], atol=1e-4)
    # the model file is the fine-tuned model: it started from the pretrained one, kept its
    # losses and intensity scaling, moved away from it, and reproduces the written SR image
    model = load_model(result.model_path)
    assert model.metadata["iteration"] == 2
    assert model.metadata["initialised_from"] == "default"
    assert model.config.channels == 8  # the tiny preset
    assert model.metadata["normalisation"] == pytest.approx(start.metadata["normalisation"])
    tuned = model.metadata["train_config"]
    for key in ("vec_tolerance", "augment_lr", "w_adv"):
        assert tuned[key] == start.metadata["train_config"][key], key
    # trained against fused video targets, it fine-tunes on one frame held to itself
    assert tuned["w_anchor"] == recipe_losses(start.metadata["train_config"])["w_anchor"] == 10.0
    moved = [
        not np.allclose(a.detach().numpy(), b.detach().numpy())
        for a, b in zip(
            model.generator.state_dict().values(), start.generator.state_dict().values(),
            strict=True,
        )
    ]  # fmt: skip
    assert any(moved)
    sr = super_resolve(model, tli, device="cpu", mask=bundle.fov_mask)
    np.testing.assert_allclose(sr, result.images["Fine-tuned"], atol=1e-4)
    # progress: every stage, training step by step; the pretrained result comes first
    stages = [e.stage for e in events]
    for stage in ("simulate", "pretrained", "train", "super-resolve", "evaluate", "write"):
        assert stage in stages
    assert stages.index("pretrained") < stages.index("train")
    (first,) = [e for e in events if e.stage == "pretrained" and e.step == 1]
    assert "TLI" in first.message and "dB" in first.message and "pretrained" in first.message
    train_steps = [e.step for e in events if e.stage == "train"]
    assert train_steps == [0, 1, 2]
    assert all(e.losses for e in events if e.stage == "train" and e.step > 0)


def test_demo_from_scratch_and_a_picture_the_pretrained_model_saw(tmp_path, one_thread):
    out = tmp_path / "demo"
    run_demo(out, device="cpu", **TINY)
    assert (out / "sr_pretrained.tif").is_file()
    # from scratch, over the earlier result: no pretrained rows, and the earlier run's
    # pretrained image does not stay behind to be mistaken for this run's
    result = run_demo(out, device="cpu", from_scratch=True, overwrite=True, **TINY)
    assert [row["method"] for row in result.rows][4:] == [
        "From scratch",
        "From scratch + projection",
    ]
    assert result.pretrained is None and result.first_result_seconds is None
    assert not (out / "sr_pretrained.tif").exists()
    assert "initialised_from" not in result.model.metadata or (
        result.model.metadata["initialised_from"] is None
    )
    # camera is one of the pretrained model's training pictures: the report says so
    result = run_demo(tmp_path / "cam", image="camera", device="cpu", **TINY)
    assert "is one of that model's training pictures" in result.metrics_md.read_text()
    by = {row["method"]: row for row in result.rows}
    assert by["TLI + projection"]["cycle_error"] < by["TLI"]["cycle_error"] / 2


def test_demo_refuses_a_preset_the_pretrained_model_is_not(tmp_path):
    options = {k: v for k, v in TINY.items() if k != "preset"}
    with pytest.raises(ValueError, match="from_scratch"):
        run_demo(tmp_path / "d", preset="default", device="cpu", **options)
    assert not (tmp_path / "d").exists()  # before any work


def test_demo_command(tmp_path, capsys, one_thread):
    args = ["demo", "--out", str(tmp_path / "d"), "--quick", "--image", "brick", "--quiet"]
    args += ["--preset", "tiny", "--size", "64", "--iterations", "1", "--patch", "32"]
    assert main([*args, "--batch-size", "2", "--device", "cpu", *one_thread]) == 0
    text = capsys.readouterr().out
    assert "| Pretrained |" in text and "| Fine-tuned |" in text and "demo.png" in text
    # the pretrained result is printed before the fine-tuning starts
    assert text.index("[pretrained] after") < text.index("[train] fine-tuning 'default'")
    assert (tmp_path / "d" / "demo.png").is_file()
    args[2] = str(tmp_path / "e")
    assert main([*args, "--batch-size", "2", "--device", "cpu", "--from-scratch", *one_thread]) == 0
    text = capsys.readouterr().out
    assert "| From scratch |" in text and "[pretrained]" not in text
    assert main(["demo", "--out", str(tmp_path / "f"), "--preset", "default", "--quick"]) == 1
    assert "--from-scratch" in capsys.readouterr().err


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
