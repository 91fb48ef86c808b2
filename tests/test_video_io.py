"""Reading videos: multi-page TIFF, folders of frames (natural order), PyAV files, lazily."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import tifffile

from napari_cycsr._imageio import find_images, read_image
from napari_cycsr.video import natural_key, read_video


def _frames(n=5, shape=(24, 32), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, *shape)) * 200 + 20).astype(np.uint8)


def _write_video(path, frames, codec="ffv1", pix_fmt="gray", rgb=None):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        for k, frame in enumerate(frames):
            data = np.stack([frame] * 3, -1) if rgb is None else rgb[k]
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(data), format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_natural_order():
    names = ["10.tif", "2.tif", "1.tif", "frame_11.png", "frame_9.png"]
    assert sorted(names, key=natural_key) == [
        "1.tif", "2.tif", "10.tif", "frame_9.png", "frame_11.png",
    ]  # fmt: skip


def test_folder_of_frames_in_natural_order_eager_and_lazy(tmp_path):
    frames = _frames(12)
    for i, frame in enumerate(frames, start=1):
        tifffile.imwrite(tmp_path / f"{i}.tif", frame)
    (tmp_path / ".tmp-partial.tif").write_bytes(b"half")  # hidden: skipped
    stack = read_video(tmp_path)
    np.testing.assert_array_equal(stack, frames)  # 1, 2, ..., 10, 11, 12
    lazy = read_video(tmp_path, lazy=True)
    assert hasattr(lazy, "compute") and lazy.shape == frames.shape
    np.testing.assert_array_equal(lazy[9:11].compute(), frames[9:11])
    np.testing.assert_array_equal(read_image(tmp_path), frames)  # the CLI reader too
    np.testing.assert_array_equal(read_video(sorted(tmp_path.glob("[0-9]*.tif"))[:2]).shape,
                                  (2, 24, 32))  # fmt: skip


def test_multipage_tiff_lazy(tmp_path):
    frames = _frames(7)
    tifffile.imwrite(tmp_path / "v.tif", frames, photometric="minisblack")
    np.testing.assert_array_equal(read_video(tmp_path / "v.tif"), frames)
    lazy = read_video(tmp_path / "v.tif", lazy=True, chunk=3)
    assert lazy.chunks[0] == (3, 3, 1)
    np.testing.assert_array_equal(lazy.compute(), frames)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        read_video(tmp_path)
    tifffile.imwrite(tmp_path / "1.tif", np.zeros((10, 12), np.uint8))
    tifffile.imwrite(tmp_path / "2.tif", np.zeros((10, 13), np.uint8))
    with pytest.raises(ValueError, match="same shape"):
        read_video(tmp_path)
    lazy = read_video(tmp_path, lazy=True)  # found when the frame is read
    with pytest.raises(ValueError, match="same shape"):
        lazy.compute()
    with pytest.raises(OSError, match="no such"):
        read_video(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported"):
        read_video(tmp_path / "notes.txt")


@pytest.mark.parametrize(("name", "codec", "pix_fmt"), [
    ("v.avi", "ffv1", "gray"),
    ("v.mkv", "ffv1", "yuv420p"),
    ("v.mp4", "libx264", "yuv444p"),
])  # fmt: skip
def test_video_files_read_as_grey(tmp_path, name, codec, pix_fmt):
    frames = _frames(6, (32, 48))
    smooth = np.repeat(np.repeat(frames[:, ::4, ::4], 4, 1), 4, 2)  # codec-friendly
    _write_video(tmp_path / name, smooth, codec, pix_fmt)
    stack = read_video(tmp_path / name)
    assert stack.shape == smooth.shape and stack.dtype == np.uint8
    if codec == "ffv1" and pix_fmt == "gray":  # lossless grey
        np.testing.assert_array_equal(stack, smooth)
    else:  # lossy YUV: grey within a few levels
        assert np.abs(stack.astype(int) - smooth).mean() <= 3
    lazy = read_video(tmp_path / name, lazy=True, chunk=4)
    assert lazy.chunks[0] == (4, 2)
    np.testing.assert_array_equal(lazy[3:6].compute(), stack[3:6])  # seeks to frame 4
    np.testing.assert_array_equal(read_image(tmp_path / name), stack)
    assert tmp_path / name in find_images([tmp_path])


def test_colour_video_refused_with_the_fix(tmp_path):
    frames = _frames(3, (32, 48))
    rgb = np.stack([frames, frames[:, ::-1], frames // 2], -1).astype(np.uint8)
    _write_video(tmp_path / "c.avi", frames, "ffv1", "bgr0", rgb=rgb)
    with pytest.raises(ValueError, match="colour.*convert it to grey"):
        read_video(tmp_path / "c.avi")


def test_unreadable_video_and_missing_decoder(tmp_path, monkeypatch):
    pytest.importorskip("av")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x01not a video at all" * 50)
    with pytest.raises(OSError, match="cannot read the video"):
        read_video(bad)
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("no av")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(ImportError, match=r"napari-cycsr\[video\]"):
        read_video(bad)


def test_real_video_folder(shared_data):
    folder = shared_data / "super_res"
    stack = read_video(folder)
    assert stack.shape == (12, 960, 1280) and stack.dtype == np.uint8
    from PIL import Image

    with Image.open(folder / "10.tif") as im:
        np.testing.assert_array_equal(stack[9], np.asarray(im))  # natural order: 10 is 10th


def test_napari_reader_entry_point(tmp_path):
    from napari_cycsr._reader import get_reader, read_video_layer

    assert get_reader(str(tmp_path / "x.tif")) is None  # napari's own readers open TIFFs
    assert get_reader(str(tmp_path)) is None  # an empty folder is not a video
    tifffile.imwrite(tmp_path / "1.tif", np.zeros((8, 9), np.uint8))
    tifffile.imwrite(tmp_path / "2.tif", np.ones((8, 9), np.uint8))
    assert get_reader([str(tmp_path)]) is read_video_layer
    assert get_reader(str(tmp_path / "clip.mp4")) is read_video_layer
    ((data, meta, kind),) = read_video_layer(str(tmp_path))
    assert kind == "image" and data.shape == (2, 8, 9) and meta["name"] == tmp_path.name
