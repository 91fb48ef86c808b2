"""Issue 12 from the command line: inputs never overwritten, distinct outputs, no empty
folders, writability checked first, one clear line for every damaged input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_cycsr.cli import main


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    args = ["simulate", "--builtin", "camera", "--size", "64", "--seed", "1", "--out", str(out)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from napari_cycsr.io import save_model
    from napari_cycsr.models import SRModel

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(SRModel.new("tiny"), path)
    return path


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("cycsr: error: ")]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    return errors[0]


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


# ------------------------------------------------------------------------- data loss
def test_super_resolve_refuses_to_overwrite_its_input(tmp_path, sim_dir, tiny_model, capsys):
    x = _copy(sim_dir / "lr.tif", tmp_path / "x.tif")
    before = x.read_bytes()
    assert main(["super-resolve", str(tiny_model), str(x), "--out", str(x)]) == 1
    assert "--out" in (msg := _error(capsys)) and "is also an input" in msg and "--overwrite" in msg
    assert x.read_bytes() == before
    # the model file is an input too
    out = tmp_path / "m.tif"
    assert main(["super-resolve", str(tiny_model), str(x), "--out", str(tiny_model)]) == 1
    _error(capsys)
    assert main(["super-resolve", str(tiny_model), str(x), "--out", str(x), "--overwrite"]) == 0
    assert x.exists() and not out.exists()  # --overwrite: the user asked for it


def test_reconstruct_refuses_input_and_one_file_twice(tmp_path, capsys):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    raw = np.zeros((96, 96))
    from napari_cycsr.simulate import hexagonal_lattice

    for cy, cx in hexagonal_lattice((96, 96), 5.0, seed=0):
        raw += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
    raw_path = tmp_path / "raw.tif"
    tifffile.imwrite(raw_path, (raw + rng.normal(0, 0.01, raw.shape)).astype(np.float32))
    before = raw_path.read_bytes()
    assert main(["reconstruct", str(raw_path), "--out", str(raw_path)]) == 1
    assert "is also an input" in _error(capsys)
    assert raw_path.read_bytes() == before
    v = tmp_path / "v.npy"
    assert main(["reconstruct", str(raw_path), "--out", str(v), "--values-out", str(v)]) == 1
    assert "name the same file" in _error(capsys)
    assert not v.exists()


def test_evaluate_refuses_to_write_its_csv_over_the_reference(tmp_path, sim_dir, capsys):
    hr = _copy(sim_dir / "hr.tif", tmp_path / "hr.tif")
    before = hr.read_bytes()
    args = ["evaluate", str(sim_dir / "lr.tif"), "--reference", str(hr), "--csv", str(hr)]
    assert main(args) == 1
    assert "--csv" in _error(capsys)
    assert hr.read_bytes() == before


def test_same_stem_inputs_get_distinct_outputs(tmp_path, sim_dir, tiny_model, capsys):
    a1 = _copy(sim_dir / "lr.tif", tmp_path / "d1" / "a.tif")
    lr = tifffile.imread(sim_dir / "lr.tif")
    a2 = tmp_path / "d2" / "a.tif"
    a2.parent.mkdir()
    tifffile.imwrite(a2, lr[::-1].copy())
    np.save(tmp_path / "d1" / "a.npy", lr[:, ::-1].copy())
    out = tmp_path / "out"
    inputs = [str(a1), str(a2), str(tmp_path / "d1" / "a.npy")]
    assert main(["super-resolve", str(tiny_model), *inputs, "--out", str(out), "--quiet"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 3, written
    results = {name: np.asarray(tifffile.imread(out / name)) for name in written if "tif" in name}
    assert len({r.tobytes() for r in results.values()}) == 2  # nothing was written twice


def test_train_refuses_model_over_checkpoint_and_leaves_no_empty_folder(tmp_path, sim_dir, capsys):
    base = ["train", str(sim_dir / "lr.tif"), "--fibres", str(sim_dir / "fibres.csv")]
    ckpt = tmp_path / "ck"
    args = [*base, "--out", str(ckpt / "checkpoint.safetensors"), "--checkpoint-dir", str(ckpt)]
    assert main(args) == 1
    assert "name the same file" in _error(capsys)
    # a setting beyond its range fails with the range, and leaves no empty folder behind
    model = tmp_path / "m.safetensors"
    args = [*base, "--out", str(model), "--set", "consistency_steps=1000000000"]
    assert main(args) == 1
    assert "consistency_steps must be in [0, 50]" in _error(capsys)
    assert not (tmp_path / "m_checkpoints").exists()
    # an --out below a file fails at once, naming the path given
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    args = [*base, "--out", str(blocker / "m.safetensors"), "--checkpoint-dir", str(tmp_path)]
    assert main(args) == 1
    assert str(blocker / "m.safetensors") in _error(capsys)


def test_read_only_output_fails_before_training(tmp_path, sim_dir, capsys, monkeypatch):
    """As root every folder is writable, so the refusal is simulated through os.access."""
    import os

    out = tmp_path / "ro"
    out.mkdir()
    real = os.access

    def access(path, mode, *a, **k):
        if Path(path) == out and mode & os.W_OK:
            return False
        return real(path, mode, *a, **k)

    monkeypatch.setattr(os, "access", access)
    base = ["train", str(sim_dir / "lr.tif"), "--fibres", str(sim_dir / "fibres.csv")]
    args = [*base, "--out", str(out / "m.safetensors"), "--checkpoint-dir", str(tmp_path / "c")]
    assert main([*args, "--iterations", "100000"]) == 1
    msg = _error(capsys)
    assert str(out / "m.safetensors") in msg and "no permission" in msg
    assert not (tmp_path / "c").exists()


def test_failed_super_resolve_leaves_no_empty_out_folder(tmp_path, tiny_model, capsys):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"")
    out = tmp_path / "new" / "out"
    assert main(["super-resolve", str(tiny_model), str(bad), "--out", str(out)]) == 1
    assert "empty file" in _error(capsys)
    assert not (tmp_path / "new").exists()


def test_super_resolve_without_fibres_warns_and_fills_the_edge(
    tmp_path, sim_dir, tiny_model, capsys
):
    out = tmp_path / "o.tif"
    args = ["super-resolve", str(tiny_model), str(sim_dir / "lr.tif"), "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "no --fibres" in err and "zero surround" in err
    lr = tifffile.imread(sim_dir / "lr.tif")
    result = tifffile.imread(out)
    assert np.all(result[lr == 0] == 0)  # the guessed FOV ends where the input's does


# ------------------------------------------------------------------------- damaged inputs
@pytest.mark.parametrize("command", ["super-resolve", "detect", "evaluate", "train"])
def test_zero_byte_npy_is_one_line(tmp_path, sim_dir, tiny_model, command, capsys):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"")
    args = {
        "super-resolve": ["super-resolve", str(tiny_model), str(bad), "--out", str(tmp_path)],
        "detect": ["detect", str(bad), "--out", str(tmp_path / "f.csv")],
        "evaluate": ["evaluate", str(bad), "--reference", str(sim_dir / "hr.tif")],
        "train": ["train", str(bad), "--fibres", str(sim_dir / "fibres.csv"),
                  "--out", str(tmp_path / "m.safetensors")],
    }[command]  # fmt: skip
    assert main(args) == 1
    assert "empty file" in _error(capsys)


def test_detect_on_noise_says_no_bundle(tmp_path, capsys):
    noise = tmp_path / "noise.npy"
    np.save(noise, np.random.default_rng(0).uniform(0, 255, (160, 200)))
    assert main(["detect", str(noise), "--out", str(tmp_path / "f.csv")]) == 1
    assert "no fibre bundle found" in _error(capsys)
    assert not (tmp_path / "f.csv").exists()


def test_all_zero_background_is_refused(tmp_path, sim_dir, capsys):
    bg = tmp_path / "bg.npy"
    np.save(bg, np.zeros((64, 64), np.float32))
    args = ["reconstruct", str(sim_dir / "lr.tif"), "--fibres", str(sim_dir / "fibres.csv")]
    assert main([*args, "--background", str(bg), "--out", str(tmp_path / "r.tif")]) == 1
    assert "background is all zero" in _error(capsys)


def test_simulate_cli_and_api_agree_on_int16(tmp_path):
    from napari_cycsr.simulate import simulate_pcle

    image = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.int16)
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, image)
    assert main(["simulate", str(path), "--seed", "3", "--out", str(tmp_path / "s")]) == 0
    from_cli = tifffile.imread(tmp_path / "s" / "hr.tif")
    np.testing.assert_allclose(from_cli, simulate_pcle(image, seed=3).hr, atol=1e-7)
