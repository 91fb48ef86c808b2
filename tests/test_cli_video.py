"""``cycsr register``, ``cycsr fuse`` and ``cycsr evaluate --leave-one-out`` end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage import data

from napari_cycsr.cli import main
from napari_cycsr.metrics import psnr
from napari_cycsr.simulate import simulate_pcle_video


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> dict:
    """A simulated video as a folder of TLI frames, its fibres CSV and the truth."""
    out = tmp_path_factory.mktemp("video")
    vid = simulate_pcle_video(data.grass()[:130, :130], 6, seed=2, step=0.8, noise=0.01)
    frames = out / "frames"
    frames.mkdir()
    for t, frame in enumerate(vid.lr, start=1):  # 1.tif ... 6.tif: natural order matters
        tifffile.imwrite(frames / f"{t}.tif", frame)
    vid.bundle.save_csv(out / "fibres.csv")
    tifffile.imwrite(out / "stack.tif", vid.lr, photometric="minisblack")
    return {"dir": out, "frames": frames, "vid": vid}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_register_then_fuse(video_dir, capsys):
    d, vid = video_dir["dir"], video_dir["vid"]
    shifts = d / "shifts.csv"
    args = [str(video_dir["frames"]), "--fibres", str(d / "fibres.csv"), "--quiet"]
    assert main(["register", *args, "--out", str(shifts)]) == 0
    out = capsys.readouterr().out
    assert "frames: 6 (reference 0), good: 6" in out
    rows = _rows(shifts)
    assert [int(r["frame"]) for r in rows] == list(range(6))
    est = np.array([[float(r["dy"]), float(r["dx"])] for r in rows])
    assert np.median(np.hypot(*(est - vid.shifts).T)) < 0.1

    hr = d / "hr.tif"
    assert main(["fuse", *args, "--shifts", str(shifts), "--out", str(hr)]) == 0
    assert "fused frames: [0, 1, 2, 3, 4, 5]" in capsys.readouterr().out
    image = tifffile.imread(hr)
    m = vid.bundle.fov_mask
    assert image.shape == vid.bundle.shape
    assert psnr(image, vid.hr, mask=m, data_range=1.0) > psnr(vid.lr[0], vid.hr, mask=m) + 1.0

    # a multi-page TIFF, registering on the fly, x2 grid, frames subset
    x2 = d / "hr_x2.npy"
    assert main(["fuse", str(d / "stack.tif"), "--fibres", str(d / "fibres.csv"), "--quiet",
                 "--scale", "2", "--frames", "0-3", "--out", str(x2)]) == 0  # fmt: skip
    assert np.load(x2).shape == (2 * vid.bundle.shape[0], 2 * vid.bundle.shape[1])
    assert "fused frames: [0, 1, 2, 3]" in capsys.readouterr().out


def test_fuse_modes_and_leave_one_out(video_dir, capsys):
    d, vid = video_dir["dir"], video_dir["vid"]
    args = [str(video_dir["frames"]), "--fibres", str(d / "fibres.csv"), "--quiet"]
    assert main(["fuse", *args, "--mode", "video", "--window", "3", "--method", "mean",
                 "--out", str(d / "v.tif")]) == 0  # fmt: skip
    assert tifffile.imread(d / "v.tif").shape == vid.lr.shape
    assert main(["fuse", *args, "--mode", "mosaic", "--out", str(d / "m.tif")]) == 0
    assert "mosaic origin" in capsys.readouterr().out
    assert main(["fuse", *args, "--leave-one-out", "2", "--out", str(d / "loo.tif")]) == 0
    text = capsys.readouterr().out
    assert "left out: [2]" in text and "fused frames: [0, 1, 3, 4, 5]" in text


def test_evaluate_against_leave_one_out_reference(video_dir, capsys):
    d, vid = video_dir["dir"], video_dir["vid"]
    tli2 = d / "tli2.tif"
    tifffile.imwrite(tli2, vid.lr[2])
    truth = d / "truth2.tif"
    tifffile.imwrite(truth, vid.frames[2])
    assert main(["evaluate", str(tli2), str(truth), "--leave-one-out",
                 str(video_dir["frames"]), "--frame", "2", "--fibres",
                 str(d / "fibres.csv")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "fused from frames [0, 1, 3, 4, 5]" in out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| t")]
    psnr_col = {r[1].strip(): float(r[3]) for r in rows}
    assert psnr_col["truth2"] > psnr_col["tli2"]  # the truth is closer to HR^ than TLI is


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("cycsr: error: ") and "\n" not in err
    return err


def test_video_commands_bad_input(video_dir, tmp_path, capsys):
    d = video_dir["dir"]
    frames = str(video_dir["frames"])
    assert main(["register", frames, "--out", str(tmp_path / "s.txt")]) == 1
    assert ".csv" in _error(capsys)
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, np.zeros((20, 20), np.float32))
    assert main(["register", str(one), "--out", str(tmp_path / "s.csv")]) == 1
    assert "at least 2 frames" in _error(capsys)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    tifffile.imwrite(mixed / "1.tif", np.zeros((20, 20), np.float32))
    tifffile.imwrite(mixed / "2.tif", np.zeros((20, 24), np.float32))
    assert main(["register", str(mixed), "--out", str(tmp_path / "s.csv")]) == 1
    assert "same shape" in _error(capsys)
    assert main(["fuse", frames, "--fibres", str(d / "fibres.csv"), "--exclude", "0-9",
                 "--out", str(tmp_path / "x.tif")]) == 1  # fmt: skip
    assert "exclude" in _error(capsys)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["fuse", frames, "--shifts", str(bad), "--out", str(tmp_path / "x.tif")]) == 1
    assert "dy, dx" in _error(capsys)
    assert main(["evaluate", str(one), "--leave-one-out", frames]) == 1
    assert "--frame" in _error(capsys)
    assert main(["fuse", frames, "--frames", "x-y", "--out", "o.tif"]) == 2  # usage error
    assert not (tmp_path / "x.tif").exists()  # nothing written on error


def test_real_video_fuses_and_resolves(shared_data, tmp_path, capsys):
    frames = shared_data / "super_res"
    bg = shared_data / "usaf1_background.tif"
    fibres = tmp_path / "fibres.csv"
    assert main(["detect", str(bg), "--out", str(fibres)]) == 0
    shifts = tmp_path / "shifts.csv"
    assert main(["register", str(frames), "--fibres", str(fibres), "--background", str(bg),
                 "--quiet", "--out", str(shifts)]) == 0  # fmt: skip
    rows = _rows(shifts)
    assert all(r["good"] == "True" for r in rows)
    est = np.array([[float(r["dy"]), float(r["dx"])] for r in rows])
    assert 25 < np.abs(est).max() < 40  # the frames moved by up to ~36 px
