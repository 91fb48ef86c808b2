"""Tests of the ``cycsr`` command line (called in-process through ``main``)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_cycsr.cli import build_parser, main
from napari_cycsr.simulate import hexagonal_lattice

DATA = Path(
    os.environ.get("NAPARI_CYCSR_TEST_DATA")
    or Path(__file__).parents[1] / ".." / "shared" / "data" / "pyfibrebundle"
)
COMMANDS = [
    "demo", "simulate", "detect", "reconstruct", "train", "super-resolve", "evaluate",
    "rate-summary", "register", "fuse",
]  # fmt: skip


def raw_frame(shape=(128, 128), spacing=6.0, seed=0, brightness=None) -> tuple[np.ndarray, int]:
    """A synthetic raw bundle frame: Gaussian cores on a jittered hexagonal lattice."""
    centres = hexagonal_lattice(shape, spacing, jitter=0.05, seed=seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    frame = np.zeros(shape)
    gains = np.ones(len(centres)) if brightness is None else brightness(centres)
    for (cy, cx), g in zip(centres, gains):
        frame += g * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.22 * spacing) ** 2))
    return (200 * frame / frame.max()).astype(np.float32), len(centres)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert (
        main(["simulate", "--builtin", "camera", "--size", "80", "--seed", "1", "--out", str(out)])
        == 0
    )
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from napari_cycsr.io import save_model
    from napari_cycsr.models import SRModel

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(SRModel.new("tiny"), path)
    return path


# ---------------------------------------------------------------------------- help and errors


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert f"usage: cycsr {command}" in text
    assert "examples:" in text


def test_top_level_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in COMMANDS:
        assert command in text
    assert main([]) == 2  # no command: help on stderr, usage error


def test_version(capsys):
    from napari_cycsr import __version__

    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    assert main(["no-such-command"]) == 2
    assert main(["simulate", "--out", "x"]) == 2  # neither IMAGE nor --builtin
    assert main(["simulate", "--builtin", "camera", "--noise", "-1", "--out", "x"]) == 2
    assert main(["super-resolve", "m.safetensors", "a.tif", "--out", "o", "--tile", "0"]) == 2
    assert "usage:" in capsys.readouterr().err


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    err = "\n".join(line for line in lines if not line.startswith("cycsr: warning: "))
    assert err.startswith("cycsr: error: ")
    assert "\n" not in err
    assert "Traceback" not in captured.err
    return err


def test_missing_input_is_one_line_error(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "nothere.tif"), "--out", str(tmp_path / "f.csv")]) == 1
    assert "nothere.tif" in _one_line_error(capsys)


def test_unsupported_suffix_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "frame.jpg"
    bad.write_bytes(b"not an image")
    assert main(["detect", str(bad), "--out", str(tmp_path / "f.csv")]) == 1
    assert ".jpg" in _one_line_error(capsys)


def test_corrupt_tiff_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "frame.tif"
    bad.write_bytes(b"II*\x00garbage")
    assert main(["detect", str(bad), "--out", str(tmp_path / "f.csv")]) == 1
    _one_line_error(capsys)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(OSError, match="nothere"):
        main(["--debug", "detect", str(tmp_path / "nothere.tif"), "--out", "f.csv"])
    with pytest.raises(OSError, match="nothere"):
        main(["detect", str(tmp_path / "nothere.tif"), "--out", "f.csv", "--debug"])


def test_parser_is_buildable_without_side_effects():
    parser = build_parser()
    args = parser.parse_args(["evaluate", "a.tif", "--reference", "b.tif"])
    assert args.command == "evaluate" and args.images == ["a.tif"]


# ---------------------------------------------------------------------------- simulate


def test_simulate_builtin_writes_everything(sim_dir, capsys):
    hr = tifffile.imread(sim_dir / "hr.tif")
    lr = tifffile.imread(sim_dir / "lr.tif")
    values = np.load(sim_dir / "values.npy")
    rows = read_csv_rows(sim_dir / "fibres.csv")
    assert hr.shape == lr.shape == (80, 80)
    assert hr.dtype == lr.dtype == np.float32
    assert 0.0 <= hr.min() and hr.max() <= 1.0
    assert values.shape == (len(rows),) and values.dtype == np.float32
    assert len(rows) > 100
    assert {"y", "x"} <= set(rows[0])
    # the LR image is a degraded version of the HR, not a copy
    inside = lr != 0
    assert 0 < np.abs(lr - hr)[inside].mean() < 0.2


def test_simulate_from_file_is_seeded(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rgb = (rng.random((60, 70, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    for name in ("a", "b"):
        args = ["simulate", str(tmp_path / "photo.png"), "--out", str(tmp_path / name)]
        assert main([*args, "--spacing", "3", "--noise", "0.05", "--seed", "7"]) == 0
    assert "fibres" in capsys.readouterr().out
    a = tifffile.imread(tmp_path / "a" / "lr.tif")
    b = tifffile.imread(tmp_path / "b" / "lr.tif")
    assert a.shape == (60, 70)
    np.testing.assert_array_equal(a, b)
    assert (
        main(
            ["simulate", str(tmp_path / "photo.png"), "--size", "40", "--out", str(tmp_path / "c")]
        )
        == 0
    )
    assert tifffile.imread(tmp_path / "c" / "hr.tif").shape == (34, 40)


def test_simulate_refuses_a_stack(tmp_path, capsys):
    np.save(tmp_path / "stack.npy", np.zeros((2, 32, 32), np.float32))
    assert main(["simulate", str(tmp_path / "stack.npy"), "--out", str(tmp_path / "o")]) == 1
    assert "2-D" in _one_line_error(capsys)


# ---------------------------------------------------------------------------- detect


def test_detect_synthetic_frame(tmp_path, capsys):
    frame, n_true = raw_frame()
    tifffile.imwrite(tmp_path / "raw.tif", frame)
    out = tmp_path / "sub" / "fibres.csv"
    assert main(["detect", str(tmp_path / "raw.tif"), "--spacing", "6", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    n_found = int(text.split("n_fibres:")[1].split()[0])
    assert abs(n_found - n_true) <= 0.1 * n_true
    assert len(read_csv_rows(out)) == n_found
    assert 5.0 < float(text.split("spacing:")[1].split()[0]) < 7.0


def test_detect_refuses_a_non_csv_output(tmp_path, capsys):
    frame, _ = raw_frame()
    np.save(tmp_path / "raw.npy", frame)
    assert main(["detect", str(tmp_path / "raw.npy"), "--out", str(tmp_path / "f.txt")]) == 1
    assert ".csv" in _one_line_error(capsys)


def test_detect_background_of_other_size(tmp_path, capsys):
    frame, _ = raw_frame()
    np.save(tmp_path / "raw.npy", frame)
    np.save(tmp_path / "bg.npy", frame[:100])
    args = ["detect", str(tmp_path / "raw.npy"), "--background", str(tmp_path / "bg.npy")]
    assert main([*args, "--out", str(tmp_path / "f.csv")]) == 1
    assert "background" in _one_line_error(capsys)


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "usaf1_background.tif").is_file(), reason="real frames absent")
def test_detect_and_reconstruct_real_lzw_frames(tmp_path, capsys):
    fibres = tmp_path / "fibres.csv"
    assert main(["detect", str(DATA / "usaf1_background.tif"), "--out", str(fibres)]) == 0
    n = int(capsys.readouterr().out.split("n_fibres:")[1].split()[0])
    assert n > 5000
    out = tmp_path / "usaf.tif"
    args = ["reconstruct", str(DATA / "usaf1.tif"), "--fibres", str(fibres)]
    assert main([*args, "--background", str(DATA / "usaf1_background.tif"), "--out", str(out)]) == 0
    image = tifffile.imread(out)
    assert image.shape == (960, 1280) and image.dtype == np.float32
    assert image.max() > 0.5  # flat-fielded: about 1 where the target is clear


# ---------------------------------------------------------------------------- reconstruct


def test_reconstruct_stack_with_background(tmp_path, capsys):
    bg, _ = raw_frame()
    left = raw_frame(brightness=lambda c: np.where(c[:, 1] < 64, 1.0, 0.25))[0]
    np.save(tmp_path / "bg.npy", bg)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([left, bg]), photometric="minisblack")
    fibres = tmp_path / "fibres.csv"
    assert main(["detect", str(tmp_path / "bg.npy"), "--spacing", "6", "--out", str(fibres)]) == 0
    out = tmp_path / "recon.tif"
    values = tmp_path / "values.npy"
    args = ["reconstruct", str(tmp_path / "stack.tif"), "--fibres", str(fibres)]
    args += ["--background", str(tmp_path / "bg.npy"), "--out", str(out)]
    assert main([*args, "--values-out", str(values)]) == 0
    assert "2 frames" in capsys.readouterr().out
    recon = tifffile.imread(out)
    assert recon.shape == (2, 128, 128) and recon.dtype == np.float32
    v = np.load(values)
    assert v.shape == (2, len(read_csv_rows(fibres)))
    # flat-fielded: the background frame gives ~1 everywhere, the test frame ~1 / ~0.25
    np.testing.assert_allclose(np.median(v[1]), 1.0, atol=0.05)
    assert recon[0, 64, 40] > 0.8 and recon[0, 64, 90] < 0.4


def test_reconstruct_with_consistency_projection(tmp_path, sim_dir, capsys):
    from napari_cycsr.consistency import cell_means
    from napari_cycsr.fibres import FibreBundle

    hr = tifffile.imread(sim_dir / "hr.tif")  # stands in for a raw frame: cores read off it
    np.save(tmp_path / "raw.npy", hr)
    base = ["reconstruct", str(tmp_path / "raw.npy"), "--fibres", str(sim_dir / "fibres.csv")]
    values = tmp_path / "v.npy"
    assert main([*base, "--out", str(tmp_path / "tli.npy"), "--values-out", str(values)]) == 0
    assert "projection" not in capsys.readouterr().out
    exact = ["--project", "2", "--project-noise", "exact"]
    assert main([*base, "--out", str(tmp_path / "sharp.npy"), *exact]) == 0
    assert "consistency projection, 2 step(s), exact fit" in capsys.readouterr().out
    bundle = FibreBundle.from_csv(sim_dir / "fibres.csv", shape=hr.shape)
    v = np.load(values)
    tli, sharp = np.load(tmp_path / "tli.npy"), np.load(tmp_path / "sharp.npy")
    assert sharp.shape == tli.shape and sharp.dtype == np.float32
    error_tli = np.nanmean((cell_means(tli, bundle) - v) ** 2)
    error_sharp = np.nanmean((cell_means(sharp, bundle) - v) ** 2)
    assert error_sharp < error_tli / 5
    # the default projection stops at the noise level of the values (here no noise at all:
    # the cores read off an image; a given noise level of 0.02 leaves more residual)
    assert main([*base, "--out", str(tmp_path / "n.npy"), "--project", "5",
                 "--project-noise", "0.02"]) == 0  # fmt: skip
    assert "noise sd 0.02" in capsys.readouterr().out
    error_aware = np.nanmean((cell_means(np.load(tmp_path / "n.npy"), bundle) - v) ** 2)
    assert error_sharp < error_aware < error_tli
    assert main([*base, "--out", str(tmp_path / "x.npy"), "--project", "-1"]) == 2


def test_reconstruct_detects_when_no_fibres_given(tmp_path, capsys):
    frame, _ = raw_frame()
    np.save(tmp_path / "raw.npy", frame)
    out = tmp_path / "recon.npy"
    assert (
        main(["reconstruct", str(tmp_path / "raw.npy"), "--spacing", "6", "--out", str(out)]) == 0
    )
    assert "detected" in capsys.readouterr().out
    recon = np.load(out)
    assert recon.shape == (128, 128) and recon.dtype == np.float32


def test_reconstruct_fibres_from_another_frame_size(tmp_path, sim_dir, capsys):
    frame, _ = raw_frame(shape=(64, 64))
    np.save(tmp_path / "raw.npy", frame)
    fibres = sim_dir / "fibres.csv"  # centres of an 80x80 frame, some outside 64x64
    args = ["reconstruct", str(tmp_path / "raw.npy"), "--fibres", str(fibres)]
    assert main([*args, "--out", str(tmp_path / "r.tif")]) == 1
    _one_line_error(capsys)
    assert not (tmp_path / "r.tif").exists()


# ---------------------------------------------------------------------------- super-resolve


def test_super_resolve_files_folders_and_stacks(tmp_path, sim_dir, tiny_model, capsys):
    lr = tifffile.imread(sim_dir / "lr.tif")
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "stack.tif", np.stack([lr, lr[::-1]]), photometric="minisblack")
    np.save(inputs / "frame.npy", lr)
    Image.fromarray((np.clip(lr, 0, 1) * 255).astype(np.uint8)).save(inputs / "view.png")
    out = tmp_path / "out"
    args = ["super-resolve", str(tiny_model), str(inputs), str(sim_dir / "lr.tif")]
    assert main([*args, "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "frame_sr.npy",
        "lr_sr.tif",
        "stack_sr.tif",
        "view_sr.tif",
    ]
    stack = tifffile.imread(out / "stack_sr.tif")
    assert stack.shape == (2, 80, 80) and stack.dtype == np.float32
    frame = np.load(out / "frame_sr.npy")
    assert frame.dtype == np.float32
    # an untrained model starts as the identity: the output keeps the input's intensities
    np.testing.assert_allclose(frame, lr, atol=1e-3)
    np.testing.assert_allclose(stack[1], lr[::-1], atol=1e-3)


def test_super_resolve_to_one_file_with_tiles(tmp_path, sim_dir, tiny_model, capsys):
    out = tmp_path / "result.tif"
    args = ["super-resolve", str(tiny_model), str(sim_dir / "lr.tif"), "--out", str(out)]
    args += ["--fibres", str(sim_dir / "fibres.csv")]
    assert main([*args, "--tile", "48", "--overlap", "8", "--device", "cpu"]) == 0
    result = tifffile.imread(out)
    assert result.shape == (80, 80) and result.dtype == np.float32
    assert result[0, 0] == 0 and result[40, 40] != 0  # masked to the round field of view
    assert "lr.tif" in capsys.readouterr().out


def test_super_resolve_projects_onto_the_fibre_values(tmp_path, sim_dir, tiny_model, capsys):
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.metrics import cycle_error

    lr = tifffile.imread(sim_dir / "lr.tif")
    values = np.load(sim_dir / "values.npy")
    bundle = FibreBundle.from_csv(sim_dir / "fibres.csv", lr.shape)
    base = ["super-resolve", str(tiny_model), str(sim_dir / "lr.tif"), "--device", "cpu"]
    base += ["--fibres", str(sim_dir / "fibres.csv"), "--quiet"]
    exact = ["--project-iterations", "3", "--project-noise", "exact"]
    assert main([*base, "--out", str(tmp_path / "p.tif"), *exact]) == 0
    assert "projected onto the fibre values (3 it., exact fit" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "n.tif"), "--no-project"]) == 0
    args = [*base, "--out", str(tmp_path / "v.tif"), *exact]
    assert main([*args, "--values", str(sim_dir / "values.npy")]) == 0
    # the default projection is noise-aware: consistent up to the noise of the values
    assert main([*base, "--out", str(tmp_path / "a.tif")]) == 0
    assert "noise estimated from the values" in capsys.readouterr().out
    from napari_cycsr.consistency import DEFAULT_TOLERANCE, estimate_noise

    aware = tifffile.imread(tmp_path / "a.tif")
    band = DEFAULT_TOLERANCE * estimate_noise(values, bundle)
    residual = values - bundle.vectorize(aware)
    assert (
        np.sqrt(np.mean(residual**2))
        < band
        < np.sqrt(np.mean((values - bundle.vectorize(lr)) ** 2))
    )
    assert main([*base, "--out", str(tmp_path / "b.tif"), "--project-noise", "lots"]) == 2
    assert "expected 'auto', 'exact' or a noise level" in capsys.readouterr().err
    projected, plain, given = (tifffile.imread(tmp_path / f) for f in ("p.tif", "n.tif", "v.tif"))
    # the untrained model is the identity: without projection the output is the TLI input
    np.testing.assert_allclose(plain[bundle.fov_mask], lr[bundle.fov_mask], atol=1e-3)
    assert cycle_error(projected, bundle, values) < cycle_error(plain, bundle, values) / 10
    np.testing.assert_allclose(given, projected, atol=1e-4)
    assert np.all(projected[~bundle.fov_mask] == 0)
    # --values without --fibres, or of the wrong length
    args = ["super-resolve", str(tiny_model), str(sim_dir / "lr.tif"), "--out", str(tmp_path)]
    assert main([*args, "--values", str(sim_dir / "values.npy")]) == 1
    assert "--values needs --fibres" in _one_line_error(capsys)
    np.save(tmp_path / "short.npy", values[:-1])
    assert (
        main([*base, "--out", str(tmp_path / "x.tif"), "--values", str(tmp_path / "short.npy")])
        == 1
    )
    assert "one column per fibre" in _one_line_error(capsys)


def test_super_resolve_errors(tmp_path, sim_dir, tiny_model, capsys):
    lr = str(sim_dir / "lr.tif")
    # several inputs, one output file
    args = ["super-resolve", str(tiny_model), lr, lr, "--out", str(tmp_path / "a.tif")]
    assert main(args) == 1
    assert "folder" in _one_line_error(capsys)
    # not a model file
    assert main(["super-resolve", lr, lr, "--out", str(tmp_path / "o")]) == 1
    _one_line_error(capsys)
    # colour input
    Image.fromarray(np.indices((32, 32, 3)).sum(0).astype(np.uint8)).save(tmp_path / "rgb.png")
    args = ["super-resolve", str(tiny_model), str(tmp_path / "rgb.png")]
    assert main([*args, "--out", str(tmp_path / "o")]) == 1
    assert "colour" in _one_line_error(capsys)
    # tile too small for the overlap
    args = ["super-resolve", str(tiny_model), lr, "--out", str(tmp_path / "o")]
    assert main([*args, "--tile", "20", "--overlap", "16"]) == 1
    assert "tile" in _one_line_error(capsys)


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_prints_table_and_writes_csv(tmp_path, sim_dir, capsys):
    hr = tifffile.imread(sim_dir / "hr.tif")
    np.save(tmp_path / "noisy.npy", hr + np.random.default_rng(0).normal(0, 0.05, hr.shape))
    args = ["evaluate", str(sim_dir / "lr.tif"), str(tmp_path / "noisy.npy")]
    args += ["--reference", str(sim_dir / "hr.tif"), "--lr", str(sim_dir / "lr.tif")]
    args += ["--fibres", str(sim_dir / "fibres.csv"), "--values", str(sim_dir / "values.npy")]
    assert main([*args, "--csv", str(tmp_path / "m.csv")]) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) == 4  # header, separator, two rows
    assert "ssim" in lines[0] and "tot_cs" in lines[0] and "cycle_error" in lines[0]
    rows = read_csv_rows(tmp_path / "m.csv")
    assert [r["method"] for r in rows] == ["lr", "noisy"]
    assert float(rows[0]["dgcf_lr"]) == 0.0
    assert 0 < float(rows[1]["ssim"]) < 1
    assert float(rows[1]["psnr"]) == pytest.approx(26, abs=1.5)  # sigma 0.05 -> ~26 dB


def test_evaluate_refuses_mismatched_shapes(tmp_path, sim_dir, capsys):
    np.save(tmp_path / "small.npy", np.zeros((40, 40), np.float32))
    args = ["evaluate", str(tmp_path / "small.npy"), "--reference", str(sim_dir / "hr.tif")]
    assert main(args) == 1
    assert "small.npy" in _one_line_error(capsys)
    args = ["evaluate", str(sim_dir / "lr.tif"), "--reference", str(sim_dir / "hr.tif")]
    assert main([*args, "--values", str(sim_dir / "values.npy")]) == 1
    assert "--fibres" in _one_line_error(capsys)


# ---------------------------------------------------------------------------- train

TRAIN_FAST = ["--preset", "tiny", "--batch-size", "2", "--patch", "32", "--device", "cpu"]


@pytest.fixture
def one_thread():
    """Run with ``--threads 1`` (fast on a shared machine); restore torch's setting after."""
    import torch

    before = torch.get_num_threads()
    yield ["--threads", "1"]
    assert torch.get_num_threads() == 1  # the option took effect
    torch.set_num_threads(before)


def test_train_writes_a_loadable_model(tmp_path, sim_dir, capsys, one_thread):
    from napari_cycsr.io import load_model

    out = tmp_path / "model.safetensors"
    args = ["train", str(sim_dir / "lr.tif"), "--fibres", str(sim_dir / "fibres.csv")]
    args += ["--values", str(sim_dir / "values.npy"), "--iterations", "2", "--seed", "3"]
    assert main([*args, *TRAIN_FAST, *one_thread, "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "trained to iteration 2" in text
    model = load_model(out)
    assert model.metadata["iteration"] == 2
    assert model.config.channels == 8
    checkpoint = tmp_path / "model_checkpoints" / "checkpoint.safetensors"
    assert checkpoint.is_file()
    # the trained model works through the super-resolve command
    result = tmp_path / "sr.tif"
    assert main(["super-resolve", str(out), str(sim_dir / "lr.tif"), "--out", str(result)]) == 0
    assert tifffile.imread(result).shape == (80, 80)


def test_train_set_passes_training_settings(tmp_path, sim_dir, capsys, one_thread):
    from napari_cycsr.io import load_model

    out = tmp_path / "model.safetensors"
    args = ["train", str(sim_dir / "lr.tif"), "--fibres", str(sim_dir / "fibres.csv")]
    args += ["--iterations", "1", *TRAIN_FAST, *one_thread, "--out", str(out), "--quiet"]
    sets = ["--set", "w_adv=0", "--set", "normalise-vec=true", "--set", "betas=[0.5, 0.9]"]
    assert main([*args, *sets]) == 0
    config = load_model(out).metadata["train_config"]
    assert config["w_adv"] == 0 and config["normalise_vec"] is True
    assert config["betas"] == [0.5, 0.9]
    for bad, message in [
        ("preset=tiny", "use the --preset option"),
        ("learning_rat=1", "unknown training setting"),
        ("lr=1e-3", "renamed; use --set learning_rate"),
        ("w_adv=-1", "w_adv"),
        ("noise_sigma=loud", "noise_sigma"),
    ]:
        assert main([*args, "--set", bad]) == 1
        assert message in _one_line_error(capsys)
    assert main([*args, "--set", "w_adv"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_train_ctrl_c_keeps_a_checkpoint_and_resume_continues(
    tmp_path, sim_dir, monkeypatch, capsys, one_thread
):
    import os
    import signal

    import napari_cycsr.cli.train as cli
    from napari_cycsr.io import load_model

    real_bar = cli.progress_bar
    sent = []

    def interrupting_bar(*args, **kwargs):
        bar = real_bar(*args, **kwargs)
        update = bar.update

        def update_then_interrupt(n=1):
            update(n)
            if bar.n >= 1 and not sent:  # Ctrl-C once, after the first iteration
                sent.append(True)
                os.kill(os.getpid(), signal.SIGINT)

        bar.update = update_then_interrupt
        return bar

    monkeypatch.setattr(cli, "progress_bar", interrupting_bar)
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job
    out = tmp_path / "m.safetensors"
    ckdir = tmp_path / "ck"
    args = ["train", str(sim_dir / "lr.tif"), "--fibres", str(sim_dir / "fibres.csv")]
    args += [*TRAIN_FAST, *one_thread, "--out", str(out), "--checkpoint-dir", str(ckdir)]
    assert main([*args, "--iterations", "50"]) == 130
    err = capsys.readouterr().err
    assert "stopped at iteration 2 of 50" in err
    assert "--resume" in err and "Traceback" not in err
    checkpoint = ckdir / "checkpoint.safetensors"
    assert checkpoint.is_file() and not out.exists()
    # Ctrl-C handling is removed again after training: the previous handler is back
    assert signal.getsignal(signal.SIGINT) is handler_before
    monkeypatch.setattr(cli, "progress_bar", real_bar)
    assert main([*args, "--iterations", "3", "--resume", str(checkpoint), "--quiet"]) == 0
    assert load_model(out).metadata["iteration"] == 3


def test_train_input_errors(tmp_path, sim_dir, capsys):
    base = ["train", str(sim_dir / "lr.tif"), "--fibres", str(sim_dir / "fibres.csv")]
    out = ["--out", str(tmp_path / "m.safetensors")]
    assert main([*base, "--out", str(tmp_path / "m.pt")]) == 1
    assert "safetensors" in _one_line_error(capsys)
    assert main([*base, *out, "--target", "images"]) == 1
    assert "--target-images" in _one_line_error(capsys)
    np.save(tmp_path / "v.npy", np.zeros(7, np.float32))
    assert main([*base, *out, "--values", str(tmp_path / "v.npy")]) == 1
    assert "fibre values" in _one_line_error(capsys)
    assert main([*base, *out, "--resume", str(tmp_path / "none.safetensors")]) == 1
    assert "checkpoint" in _one_line_error(capsys)
    np.save(tmp_path / "other.npy", np.zeros((50, 60), np.float32))
    args = ["train", str(sim_dir / "lr.tif"), str(tmp_path / "other.npy")]
    assert main([*args, "--fibres", str(sim_dir / "fibres.csv"), *out]) == 1
    assert "same size" in _one_line_error(capsys)
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.slow
def test_train_under_torchrun_two_processes(tmp_path, sim_dir):
    """The unchanged command under torchrun (gloo on CPU): rank 0 alone writes the model."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "ddp.safetensors"
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "napari_cycsr.cli"]
    command += ["train", str(sim_dir / "lr.tif"), "--fibres", str(sim_dir / "fibres.csv")]
    command += [*TRAIN_FAST, "--iterations", "2", "--quiet", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("trained to iteration 2") == 1  # printed by rank 0 only
    from napari_cycsr.io import load_model

    assert load_model(out).metadata["iteration"] == 2


def test_runtime_errors_are_one_line_too(tmp_path, sim_dir, tiny_model, monkeypatch, capsys):
    import napari_cycsr.inference as inference

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setattr(inference, "super_resolve", out_of_memory)
    args = ["super-resolve", str(tiny_model), str(sim_dir / "lr.tif"), "--out", str(tmp_path)]
    assert main(args) == 1
    assert "out of memory. Tried to allocate" in _one_line_error(capsys)
    with pytest.raises(RuntimeError):
        main([*args, "--debug"])


# ---------------------------------------------------------------------------- precision


@pytest.mark.parametrize("command", ["demo", "train", "super-resolve"])
def test_precision_option_in_help(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "--precision" in text and "bf16" in text and "AMX" in text
    assert "--threads" in text and "other processes" in text


def test_precision_errors(tmp_path, sim_dir, tiny_model, capsys):
    lr = str(sim_dir / "lr.tif")
    args = ["super-resolve", str(tiny_model), lr, "--out", str(tmp_path / "o")]
    assert main([*args, "--precision", "fp16", "--device", "cpu"]) == 1
    assert "fp16" in _one_line_error(capsys)
    assert main([*args, "--precision", "half"]) == 2
    assert "--precision" in capsys.readouterr().err
    assert main([*args, "--precision", "fp32", "--threads", "1", "--quiet"]) == 0
    capsys.readouterr()
    model = str(tmp_path / "m.safetensors")
    train = ["train", lr, "--fibres", str(sim_dir / "fibres.csv"), "--out", model]
    assert main([*train, "--set", "precision=fp32"]) == 1
    assert "use the --precision option" in _one_line_error(capsys)


def test_super_resolve_ensemble_option(tmp_path, sim_dir, capsys, one_thread):
    import torch

    from napari_cycsr.inference import super_resolve
    from napari_cycsr.io import save_model
    from napari_cycsr.models import SRModel

    torch.manual_seed(3)
    model = SRModel.new("tiny")
    with torch.no_grad():  # the untrained tail is zero (output = input): give it weights
        torch.nn.init.normal_(model.generator.tail.weight, std=0.05)
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    lr = sim_dir / "lr.tif"
    args = ["super-resolve", str(path), str(lr), "--precision", "fp32", "--quiet", *one_thread]
    image = tifffile.imread(lr)
    outs = {}
    for size in ("1", "8", None):
        out = tmp_path / f"e{size}.tif"
        assert main([*args, "--out", str(out), *(["--ensemble", size] if size else [])]) == 0
        outs[size] = tifffile.imread(out)
        expected = super_resolve(
            model, image, device="cpu", precision="fp32", threads=1, mask="auto",
            **({"ensemble": int(size)} if size else {}),
        )  # fmt: skip
        np.testing.assert_allclose(outs[size], expected, atol=1e-5)
    assert np.abs(outs["1"] - outs["8"]).max() > 1e-3
    assert np.abs(outs["1"] - outs[None]).max() > 1e-3
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "x.tif"), "--ensemble", "3"]) == 2
    assert "--ensemble" in capsys.readouterr().err
    assert main(["super-resolve", "--help"]) == 0
    assert "--ensemble" in capsys.readouterr().out


# ---------------------------------------------------------------------------- issue 11


def test_simulate_help_states_the_default_it_uses(tmp_path, capsys):
    """--help's default spacing is the lattice spacing the command then reports."""
    import re

    from napari_cycsr.simulate import DEFAULT_SPACING

    assert main(["simulate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    stated = float(re.search(r"spacing of the hexagonal fibre lattice in pixels \(default: "
                             r"([0-9.]+)", text).group(1))  # fmt: skip
    assert stated == pytest.approx(DEFAULT_SPACING, abs=0.005)
    median = float(re.search(r"about ([0-9.]+) px by default", text).group(1))
    assert main(["simulate", "--builtin", "camera", "--size", "96", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    lattice = float(re.search(r"lattice spacing ([0-9.]+) px", printed).group(1))
    neighbours = float(re.search(r"neighbouring fibres ([0-9.]+) px", printed).group(1))
    assert lattice == pytest.approx(stated, abs=0.005)
    assert neighbours == pytest.approx(median, abs=0.1)
    assert main(["simulate", "--builtin", "camera", "--size", "96", "--spacing", "4",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    assert "lattice spacing 4.00 px" in capsys.readouterr().out


def test_evaluate_scores_only_the_field_of_view_and_says_so(tmp_path, sim_dir, capsys):
    """An SR image with garbage outside the FOV: without the FOV it would decide the ranking."""
    hr = tifffile.imread(sim_dir / "hr.tif")
    lr = tifffile.imread(sim_dir / "lr.tif")
    outside = lr == 0
    sr = np.where(outside, 0.9, hr).astype(np.float32)  # perfect inside, bright ring outside
    np.save(tmp_path / "sr.npy", sr)
    args = ["evaluate", str(sim_dir / "lr.tif"), str(tmp_path / "sr.npy"),
            "--reference", str(sim_dir / "hr.tif"), "--lr", str(sim_dir / "lr.tif")]  # fmt: skip
    assert main([*args, "--csv", str(tmp_path / "fov.csv")]) == 0
    text = capsys.readouterr().out
    assert "field of view found from the flat surround of lr.tif" in text
    inside = read_csv_rows(tmp_path / "fov.csv")
    assert float(inside[1]["psnr"]) > float(inside[0]["psnr"]) + 3  # SR near perfect in the FOV
    assert main([*args, "--whole-frame", "--csv", str(tmp_path / "all.csv")]) == 0
    assert "every pixel (--whole-frame)" in capsys.readouterr().out
    whole = read_csv_rows(tmp_path / "all.csv")
    assert float(whole[1]["psnr"]) < float(inside[1]["psnr"]) - 3
    # --fibres gives the field of view and says so
    assert main([*args, "--fibres", str(sim_dir / "fibres.csv")]) == 0
    assert "field of view of the fibres in" in capsys.readouterr().out


def test_evaluate_without_a_reference(tmp_path, sim_dir, capsys):
    from scipy import ndimage

    lr = tifffile.imread(sim_dir / "lr.tif")
    np.save(tmp_path / "sharp.npy", lr + 0.5 * (lr - ndimage.gaussian_filter(lr, 1.0)))
    args = ["evaluate", str(sim_dir / "lr.tif"), str(tmp_path / "sharp.npy"),
            "--lr", str(sim_dir / "lr.tif"), "--csv", str(tmp_path / "m.csv")]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "no --reference" in text
    header = next(line for line in text.splitlines() if line.startswith("|"))
    assert "ssim" not in header and "gcf" in header and "sharpness" in header
    rows = read_csv_rows(tmp_path / "m.csv")
    assert float(rows[1]["sharpness"]) > float(rows[0]["sharpness"]) > 0
    assert float(rows[1]["dgcf_lr"]) > 0


def test_rate_summary(tmp_path, capsys):
    from napari_cycsr.rating import QUESTIONS, RatingSession

    path = tmp_path / "answers.csv"
    for rater in ("ann", "bob"):
        session = RatingSession(path, ["TLI", "CycSR"], ["1", "2", "3"], rater=rater)
        while (case := session.next_case()) is not None:
            scores = {"TLI": 2, "CycSR": 4}
            session.answer(case, {s: dict.fromkeys(QUESTIONS, scores[m])
                                  for s, m in case.slots.items()})  # fmt: skip
    assert main(["rate-summary", str(path), "--methods", "TLI,CycSR",
                 "--plot", str(tmp_path / "fig6.png")]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "| TLI | 6 | 2.00 ± 0.00 |" in text and "| CycSR | 6 | 4.00 ± 0.00 |" in text
    assert text.index("| TLI |") < text.index("| CycSR |")
    assert "Wilcoxon" in text and (tmp_path / "fig6.png").stat().st_size > 1000
    assert main(["rate-summary", str(path), "--methods", "TLI,Wiener"]) == 1
    assert "Wiener" in _one_line_error(capsys)
    assert main(["rate-summary", str(tmp_path / "none.csv")]) == 1
    _one_line_error(capsys)
    (tmp_path / "bad.csv").write_text("rater,case,method,Q1\n")
    assert main(["rate-summary", str(tmp_path / "bad.csv")]) == 1
    assert "missing column" in _one_line_error(capsys)


def test_demo_refuses_to_replace_an_earlier_result(tmp_path, capsys):
    out = tmp_path / "demo_out"
    out.mkdir()
    (out / "demo.png").write_bytes(b"the 38-minute run")
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 1
    assert "--overwrite" in _one_line_error(capsys)
    assert (out / "demo.png").read_bytes() == b"the 38-minute run"


def test_demo_hint_says_how_to_get_a_qt_backend(monkeypatch):
    import importlib.util

    from napari_cycsr.cli.demo import napari_hint

    assert napari_hint("a.tif", "b.tif").endswith("napari a.tif b.tif")
    real = importlib.util.find_spec

    def no_qt(name, *args):
        return None if name.startswith(("PyQt", "PySide")) else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_qt)
    hint = napari_hint("a.tif")
    assert 'pip install "napari[pyqt6]"' in hint and "napari a.tif" in hint


# ---------------------------------------------------------------------------- pretrained


@pytest.fixture
def shipped_tiny(monkeypatch, tmp_path):
    """A pretrained-model folder holding one tiny model, in place of the package's."""
    import hashlib
    import json

    from napari_cycsr import _pretrained
    from napari_cycsr.io import save_model
    from napari_cycsr.models import SRModel

    folder = tmp_path / "pretrained"
    folder.mkdir()
    model = SRModel.new("tiny")
    model.metadata["fibre_spacing"] = 2.19
    model.metadata["train_config"] = {
        "preset": "tiny", "vec_tolerance": 1.5, "w_res": 1.0, "augment_lr": True,
        "noise_level": 0.3, "iterations": 7,
    }  # fmt: skip
    save_model(model, folder / "tiny.safetensors")
    digest = hashlib.sha256((folder / "tiny.safetensors").read_bytes()).hexdigest()
    entry = {
        "name": "tiny", "description": "an untrained tiny network", "trained_on": "nothing",
        "preset": "tiny", "iterations": 0, "fibre_spacing": 2.19, "noise": [0.01],
        "file": "tiny.safetensors", "sha256": digest, "learning_curve": "none",
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps({"models": [entry]}))
    monkeypatch.setattr(_pretrained, "_folder", lambda: folder)
    return folder


def test_pretrained_models_through_the_cli(tmp_path, sim_dir, shipped_tiny, capsys, one_thread):
    assert main(["super-resolve", "--list-pretrained"]) == 0
    assert "tiny: an untrained tiny network" in capsys.readouterr().out
    lr = str(sim_dir / "lr.tif")
    fibres = ["--fibres", str(sim_dir / "fibres.csv"), "--quiet", *one_thread]
    assert main(["super-resolve", "--pretrained", "tiny", lr, "--out", str(tmp_path / "a.tif"),
                 *fibres]) == 0  # fmt: skip
    assert main(["super-resolve", "pretrained:tiny", lr, "--out", str(tmp_path / "b.tif"),
                 *fibres]) == 0  # fmt: skip
    a, b = tifffile.imread(tmp_path / "a.tif"), tifffile.imread(tmp_path / "b.tif")
    np.testing.assert_array_equal(a, b)
    assert main(["super-resolve", "--pretrained", "nope", lr, "--out", str(tmp_path)]) == 1
    assert "unknown pretrained model 'nope'" in _one_line_error(capsys)
    assert main(["super-resolve", "--pretrained", "tiny", "--out", str(tmp_path)]) == 1
    assert "at least one INPUT" in _one_line_error(capsys)
    # a damaged file is refused
    (shipped_tiny / "tiny.safetensors").write_bytes(b"0" * 100)
    assert main(["super-resolve", "pretrained:tiny", lr, "--out", str(tmp_path / "c.tif")]) == 1
    assert "damaged" in _one_line_error(capsys)


def test_train_init_fine_tunes_a_pretrained_model(
    tmp_path, sim_dir, shipped_tiny, one_thread, capsys
):
    from napari_cycsr.io import load_model

    out = tmp_path / "ft.safetensors"
    args = ["train", str(sim_dir / "lr.tif"), "--fibres", str(sim_dir / "fibres.csv")]
    args += ["--out", str(out), "--init", "pretrained:tiny", "--iterations", "2", "--quiet"]
    args += ["--batch-size", "2", "--patch", "32", *one_thread]
    assert main(args) == 0
    model = load_model(out)
    assert model.metadata["initialised_from"] == "tiny"
    config = model.metadata["train_config"]
    assert config["preset"] == "tiny"
    # the model's objective comes along (not its data's noise level, nor its length)
    assert (config["vec_tolerance"], config["w_res"], config["augment_lr"]) == (1.5, 1.0, True)
    assert config["noise_level"] is None and config["iterations"] == 2
    # a --set wins over the carried setting
    out2 = tmp_path / "ft2.safetensors"
    args2 = [a if a != str(out) else str(out2) for a in args] + ["--set", "w_res=0.25"]
    assert main(args2) == 0
    assert load_model(out2).metadata["train_config"]["w_res"] == 0.25
    # the model's network is kept: another scale is refused, nothing written
    out3 = tmp_path / "ft3.safetensors"
    args3 = [a if a != str(out) else str(out3) for a in args] + ["--set", "scale=2"]
    assert main(args3) == 1
    assert "--init: the model's network has scale 1, not 2" in _one_line_error(capsys)
    assert not out3.exists()


def test_train_init_learns_at_the_initial_models_fibre_spacing(tmp_path, sim_dir, one_thread,
                                                               capsys):  # fmt: skip
    """Frames of another fibre spacing are resampled to the model's before fine-tuning, and
    the run says so; the fine-tuned model records the model's spacing."""
    from napari_cycsr.io import load_model, save_model
    from napari_cycsr.models import SRModel

    start = SRModel.new("tiny")
    start.metadata["fibre_spacing"] = 3.5  # the simulated frames' fibres: about 2.2 px
    save_model(start, tmp_path / "start.safetensors")
    out = tmp_path / "ft.safetensors"
    args = ["train", str(sim_dir / "lr.tif"), "--fibres", str(sim_dir / "fibres.csv")]
    args += ["--out", str(out), "--init", str(tmp_path / "start.safetensors")]
    args += ["--iterations", "1", "--batch-size", "2", "--patch", "32", *one_thread]
    assert main(args) == 0
    said = capsys.readouterr()
    assert "frames resampled x1.59" in said.out + said.err  # 3.5 px / their 2.20 px
    assert "to a fibre spacing of 3.50 px" in said.out + said.err
    model = load_model(out)
    assert model.metadata["fibre_spacing"] == pytest.approx(3.5, rel=0.03)
    assert model.metadata["resampled_from_spacing"] < 2.5
    # --no-match-spacing trains on the frames as they are, and warns
    with pytest.warns(UserWarning, match="not resampled"):
        assert main([*args, "--no-match-spacing"]) == 0
    said = capsys.readouterr()
    assert "frames resampled" not in said.out + said.err
    assert load_model(out).metadata["fibre_spacing"] < 2.5
