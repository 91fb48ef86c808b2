"""Tests of image reading/writing used by the command line and the demo."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_cycsr._imageio import (
    find_images,
    read_image,
    to_unit_float,
    write_image,
    write_npy,
    write_text,
)

DATA = Path(
    os.environ.get("NAPARI_CYCSR_TEST_DATA")
    or Path(__file__).parents[1] / ".." / "shared" / "data" / "pyfibrebundle"
)


@pytest.mark.parametrize("suffix", [".tif", ".npy"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.uint8])
def test_round_trip_keeps_values_and_dtype(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    for shape in [(12, 17), (3, 12, 17), (2, 3, 12, 17)]:
        data = (rng.random(shape) * 200).astype(dtype)
        path = write_image(tmp_path / f"a{suffix}", data)
        back = read_image(path)
        assert back.dtype == dtype
        np.testing.assert_array_equal(back, data)


def test_png_round_trip_and_float_png(tmp_path):
    data = np.arange(200, dtype=np.uint8).reshape(10, 20)
    write_image(tmp_path / "a.png", data)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), data)
    write_image(tmp_path / "f.png", np.array([[0.0, 0.5], [1.0, 2.0]], np.float32))
    back = read_image(tmp_path / "f.png")
    assert back.dtype == np.uint16
    assert back.tolist() == [[0, 32768], [65535, 65535]]
    with pytest.raises(ValueError, match="PNG holds one 2-D image"):
        write_image(tmp_path / "s.png", np.zeros((2, 4, 4), np.uint8))


def test_colour_is_refused_unless_grey_is_asked(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 1] = 255
    Image.fromarray(rgb).save(tmp_path / "c.png")
    tifffile.imwrite(tmp_path / "c.tif", rgb)
    for name in ("c.png", "c.tif"):
        with pytest.raises(ValueError, match="colour"):
            read_image(tmp_path / name)
        grey = read_image(tmp_path / name, grey=True)
        assert grey.shape == (20, 30)
        np.testing.assert_allclose(grey, 0.587 * 255, rtol=1e-5)


def test_three_frame_stack_written_here_is_not_colour(tmp_path):
    stack = np.random.default_rng(1).random((3, 16, 16)).astype(np.float32)
    write_image(tmp_path / "s.tif", stack)
    np.testing.assert_array_equal(read_image(tmp_path / "s.tif"), stack)


def test_npy_with_objects_is_never_unpickled(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects"):
        read_image(tmp_path / "o.npy")


def test_bad_inputs(tmp_path):
    with pytest.raises(OSError, match="no such file"):
        read_image(tmp_path / "missing.tif")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_image(tmp_path / "a.bmp")
    np.save(tmp_path / "v.npy", np.zeros(5))
    with pytest.raises(ValueError, match="2-D"):
        read_image(tmp_path / "v.npy")
    with pytest.raises(ValueError, match="2-D"):
        write_image(tmp_path / "v.tif", np.zeros(5))
    with pytest.raises(ValueError, match="dtype"):
        write_image(tmp_path / "s.tif", np.array([["a", "b"], ["c", "d"]]))


def test_write_is_atomic_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.tif"
    write_image(path, np.ones((4, 4), np.float32))

    with pytest.raises(ValueError):
        write_image(path, np.full((4, 4), "x"))  # refused before anything is written
    # an error while writing keeps the previous file and removes the temporary one
    with pytest.raises(ValueError):
        write_image(tmp_path / "b.png", np.zeros((2, 3, 3), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]
    np.testing.assert_array_equal(read_image(path), 1.0)
    # the usual permissions of a new file, not the private ones of a temporary file
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    write_npy(tmp_path / "v.npy", np.arange(3))
    assert np.load(tmp_path / "v.npy").tolist() == [0, 1, 2]
    write_text(tmp_path / "t.md", "hello\n")
    assert (tmp_path / "t.md").read_text() == "hello\n"


def test_find_images_expands_folders(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("b.tif", "a.npy", "notes.txt", ".b.tmp123.tif"):
        (tmp_path / "d" / name).write_bytes(b"")
    (tmp_path / "c.png").write_bytes(b"")
    found = find_images([tmp_path / "c.png", tmp_path / "d"])
    assert [p.name for p in found] == ["c.png", "a.npy", "b.tif"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image"):
        find_images([tmp_path / "empty"])
    with pytest.raises(OSError, match="no such file"):
        find_images([tmp_path / "nothere"])
    with pytest.raises(ValueError, match="no input"):
        find_images([])


def test_to_unit_float():
    assert to_unit_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    np.testing.assert_allclose(to_unit_float(np.array([2.0, 4.0])), [0.0, 1.0])
    kept = np.array([0.2, 0.3], np.float32)
    out = to_unit_float(kept)
    assert out is not kept and out.dtype == np.float32
    with pytest.raises(ValueError, match="NaN"):
        to_unit_float(np.array([np.nan, 1.0]))


@pytest.mark.skipif(not (DATA / "usaf1.tif").is_file(), reason="real frames absent")
def test_reads_the_real_lzw_frames():
    frame = read_image(DATA / "usaf1.tif")
    assert frame.shape == (960, 1280) and frame.dtype == np.uint8
    assert frame.max() > 100


# --------------------------------------------------------------------------------------------
# damaged and lying files (issue 12): refused before decoding, with one clear line
# --------------------------------------------------------------------------------------------


def _png_claiming(path: Path, height: int, width: int) -> Path:
    """A tiny PNG whose header claims (height, width) 8-bit grey but holds a few rows."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 2)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
    path.write_bytes(data + chunk(b"IEND", b""))
    return path


def test_png_claiming_a_huge_size_is_refused_before_decoding(tmp_path):
    import tracemalloc

    path = _png_claiming(tmp_path / "lie.png", 12000, 12000)
    assert path.stat().st_size < 400
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"lie\.png.*12000x12000.*file of \d+ bytes"):
        read_image(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20_000_000


def test_png_claiming_more_rows_than_it_holds_is_refused(tmp_path):
    path = _png_claiming(tmp_path / "short.png", 300, 300)
    with pytest.raises((OSError, ValueError), match=r"short\.png.*(truncated|damaged)"):
        read_image(path)


@pytest.mark.parametrize("size", [0, 5, 60, 127])
def test_empty_or_truncated_npy_is_a_clear_error(tmp_path, size):
    full = tmp_path / "full.npy"
    np.save(full, np.arange(64 * 64, dtype=np.float32).reshape(64, 64))
    path = tmp_path / "cut.npy"
    path.write_bytes(full.read_bytes()[:size])
    with pytest.raises(ValueError, match=r"cut\.npy.*(empty|truncated|not a \.npy)"):
        read_image(path)


def test_npy_with_missing_data_bytes_is_refused_before_loading(tmp_path):
    full = tmp_path / "full.npy"
    np.save(full, np.zeros((64, 64), np.float32))
    path = tmp_path / "cut.npy"
    path.write_bytes(full.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"truncated.*\(64, 64\).*float32"):
        read_image(path)


def test_truncated_tiff_is_a_clear_error(tmp_path):
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, np.arange(128 * 128, dtype=np.uint16).reshape(128, 128))
    path = tmp_path / "cut.tif"
    path.write_bytes(full.read_bytes()[: 128 * 64])
    with pytest.raises((OSError, ValueError), match=r"cut\.tif.*(truncated|damaged|cannot read)"):
        read_image(path)


def test_pixel_cap_is_enforced_and_can_be_raised(tmp_path, monkeypatch):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((50, 40), np.uint8))
    with pytest.raises(ValueError, match=r"2000 pixels.*more than the limit of 1000.*max_pixels"):
        read_image(path, max_pixels=1000)
    assert read_image(path, max_pixels=2000).shape == (50, 40)
    monkeypatch.setenv("NAPARI_CYCSR_MAX_PIXELS", "1000")
    with pytest.raises(ValueError, match="NAPARI_CYCSR_MAX_PIXELS"):
        read_image(path)
    png = tmp_path / "a.png"
    write_image(png, np.zeros((50, 40), np.uint8))
    with pytest.raises(ValueError, match="more than the limit"):
        read_image(png)
    monkeypatch.setenv("NAPARI_CYCSR_MAX_PIXELS", "many")
    with pytest.raises(ValueError, match="NAPARI_CYCSR_MAX_PIXELS must be a whole number"):
        read_image(path)
