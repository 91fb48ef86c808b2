"""Reading videos: multi-page TIFF, a folder of frames, AVI/MP4/... through PyAV, lazily.

Every reader returns a ``(T, H, W)`` grey stack, numpy or (``lazy=True``) dask, and applies
the project's colour rule (:func:`napari_cycsr._validate.as_grey`): RGB(A) frames whose
channels are equal are grey, a true colour video is refused with the fix. Lossy video codecs
store grey frames as YUV, whose decoded R, G and B can differ by a level or two; such frames
(every channel within 2 levels of the others) are read from the luma plane. Nothing here
imports torch, Qt or napari.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._imageio import VIDEO_SUFFIXES, read_image
from .._validate import as_grey, looks_rgb

__all__ = [
    "FRAME_SUFFIXES",
    "VIDEO_SUFFIXES",
    "frame_files",
    "is_video_path",
    "natural_key",
    "read_video",
]

#: Single-frame files a folder of frames may hold.
FRAME_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy")

#: Stacks larger than this (bytes) are read lazily when ``lazy=None``.
LAZY_BYTES = 1 << 30

_INSTALL_AV = "reading {what} needs PyAV: pip install 'napari-cycsr[video]' (or pip install av)"


def natural_key(name: str) -> tuple:
    """Sort key that orders ``frame2`` before ``frame10`` (numbers compared as numbers).

    Examples
    --------
    >>> sorted(["f10.tif", "f2.tif", "f1.tif"], key=natural_key)
    ['f1.tif', 'f2.tif', 'f10.tif']
    """
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p)


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True for a file whose suffix is a video container (see :data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def frame_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The frame files of a folder, in natural order (hidden files skipped).

    Raises
    ------
    ValueError
        The folder holds no frame file.
    """
    folder = Path(folder)
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")
    ]
    if not files:
        raise ValueError(f"{folder}: folder holds no frames ({', '.join(FRAME_SUFFIXES)} files)")
    return sorted(files, key=lambda p: natural_key(p.name))


def _grey_frame(frame: np.ndarray, name: str) -> np.ndarray:
    """Colour rule for one decoded frame; lossy-codec grey (channels within 2 levels) kept."""
    if looks_rgb(frame.shape):
        arr = np.asarray(frame)
        red = arr[..., 0].astype(np.int64)
        near = np.abs(red - arr[..., 1]).max() <= 2 and np.abs(red - arr[..., 2]).max() <= 2
        if near and not np.array_equal(arr[..., 0], arr[..., 1]):
            return np.asarray(arr[..., :3].mean(axis=-1).round().astype(arr.dtype))
        return np.asarray(as_grey(arr, name=name))
    return np.asarray(frame)


# ---------------------------------------------------------------------- PyAV videos


def _import_av(path: Path) -> Any:
    try:
        import av
    except ImportError:
        raise ImportError(_INSTALL_AV.format(what=f"{path.name}")) from None
    return av


class _VideoIndex:
    """Frame count, shape, dtype and presentation timestamps of a video (no decoding)."""

    def __init__(self, path: Path) -> None:
        av = _import_av(path)
        self.path = path
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise ValueError(f"{path}: the file holds no video stream")
                stream = container.streams.video[0]
                pix_fmt = stream.codec_context.pix_fmt or ""
                self.height = int(stream.codec_context.height)
                self.width = int(stream.codec_context.width)
                pts = [p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0]
        except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
            raise OSError(f"{path}: cannot read the video ({exc})") from exc
        if not pts:
            raise OSError(f"{path}: the video holds no frame the decoder can read")
        self.pts = sorted(pts)
        deep = any(tag in pix_fmt for tag in ("10", "12", "14", "16"))
        if pix_fmt.startswith("gray"):
            self.format = "gray16le" if deep else "gray"
        else:
            self.format = "rgb48le" if deep else "rgb24"
        self.dtype = np.dtype(np.uint16 if deep else np.uint8)

    def __len__(self) -> int:
        return len(self.pts)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Decode frames ``start:stop`` (presentation order) as a grey ``(n, H, W)`` stack."""
        av = _import_av(self.path)
        stop = len(self) if stop is None else min(int(stop), len(self))
        want = self.pts[start:stop]
        out = np.empty((len(want), self.height, self.width), self.dtype)
        if not want:
            return out
        first, last = want[0], want[-1]
        got = 0
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                if start > 0:
                    container.seek(first, stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    if frame.pts is None or frame.pts < first:
                        continue
                    if frame.pts > last or got == len(want):
                        break
                    data = frame.to_ndarray(format=self.format)
                    grey = _grey_frame(data, f"{self.path} frame {start + got}")
                    if grey.shape != (self.height, self.width):
                        raise ValueError(
                            f"{self.path}: frame {start + got} has shape {grey.shape}, "
                            f"expected {(self.height, self.width)}"
                        )
                    out[got] = grey
                    got += 1
        except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
            raise OSError(f"{self.path}: cannot decode the video ({exc})") from exc
        if got != len(want):
            raise OSError(
                f"{self.path}: the decoder gave {got} of frames {start}..{stop - 1} "
                f"({len(want)} expected); the file may be truncated"
            )
        return out


# ---------------------------------------------------------------------- TIFF and folders


def _tiff_stack_shape(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape and dtype of a TIFF's first series, and how many pages it spans."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return tuple(int(s) for s in series.shape), np.dtype(series.dtype), len(series.pages)


def _read_tiff_frames(path: Path, start: int, stop: int) -> np.ndarray:
    """Pages ``start:stop`` of a grey multi-page TIFF, as ``(n, H, W)``."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return np.asarray(tif.asarray(key=range(start, stop))).reshape(
            stop - start, *tif.pages[0].shape[-2:]
        )


def _check_stack(stack: np.ndarray, name: str) -> np.ndarray:
    grey = as_grey(stack, name=name)
    if grey.ndim == 2:
        grey = grey[None]
    if grey.ndim != 3:
        raise ValueError(f"{name}: expected frames (T, H, W), got shape {grey.shape}")
    if grey.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected real-valued frames, got dtype {grey.dtype}")
    return grey


def _folder_frames(folder: Path, lazy: bool | None) -> Any:
    files = frame_files(folder)
    first = _check_stack(read_image(files[0]), str(files[0]))
    if first.shape[0] != 1:
        raise ValueError(
            f"{files[0]}: a folder of frames must hold one 2-D frame per file, got a stack "
            f"of {first.shape[0]}"
        )
    shape, dtype = first.shape[1:], first.dtype
    if lazy is None:
        lazy = len(files) * first.nbytes > LAZY_BYTES

    def load(path: Path) -> np.ndarray:
        frame = _check_stack(read_image(path), str(path))
        if frame.shape != (1, *shape):
            raise ValueError(
                f"{path}: frame of shape {frame.shape[1:]} differs from the first frame's "
                f"{shape} ({files[0].name}); every frame of a video must have the same shape"
            )
        return frame[0].astype(dtype, copy=False)

    if not lazy:
        return np.stack([first[0]] + [load(p) for p in files[1:]])
    import dask
    import dask.array as da

    parts = [da.from_array(first[0][None], chunks=-1)] + [
        da.from_delayed(dask.delayed(load)(p), shape=shape, dtype=dtype)[None] for p in files[1:]
    ]
    return da.concatenate(parts, axis=0)


def read_video(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    lazy: bool | None = None,
    chunk: int = 16,
) -> Any:
    """Read a video as a ``(T, H, W)`` grey stack.

    Parameters
    ----------
    source : path-like or sequence of path-likes
        A video file (:data:`VIDEO_SUFFIXES`, decoded with PyAV: ``pip install
        'napari-cycsr[video]'``), a multi-page TIFF, a folder of frame files (TIFF, PNG or
        NPY, one frame each, in natural order: ``2.tif`` before ``10.tif``), or a list of
        frame files (kept in the given order).
    lazy : bool, optional
        Return a dask array that reads frames when they are computed (chunks of ``chunk``
        frames for video files and TIFFs, one file per chunk for folders). Default: lazy when
        the frames would take more than 1 GiB in memory.
    chunk : int, optional
        Frames per dask chunk for video files and multi-page TIFFs.

    Returns
    -------
    ndarray or dask.array.Array, shape (T, H, W)
        In the file's own dtype (uint8 for 8-bit video).

    Raises
    ------
    OSError
        A missing path, or a file the decoder cannot read.
    ValueError
        Frames of different shapes, a true colour video (with the fix), an empty folder or
        an unsupported file type.
    ImportError
        A video file without PyAV installed (names the extra to install).

    Examples
    --------
    >>> import numpy as np, tempfile, os, tifffile
    >>> folder = tempfile.mkdtemp()
    >>> for i in (1, 2, 10):
    ...     tifffile.imwrite(os.path.join(folder, f"{i}.tif"), np.full((4, 5), i, np.uint8))
    >>> read_video(folder)[:, 0, 0].tolist()
    [1, 2, 10]
    """
    chunk = max(1, int(chunk))
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("no frame file given")
        frames = [_check_stack(read_image(p), str(p)) for p in source]
        shapes = {f.shape[1:] for f in frames}
        if len(shapes) > 1:
            raise ValueError(
                f"frames of different shapes {sorted(shapes)}; every frame of a video must "
                "have the same shape"
            )
        return np.concatenate(frames, axis=0)
    path = Path(source)
    if path.is_dir():
        return _folder_frames(path, lazy)
    if not path.is_file():
        raise OSError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        index = _VideoIndex(path)
        n, shape, dtype = len(index), (index.height, index.width), index.dtype
        if lazy is None:
            lazy = n * shape[0] * shape[1] * dtype.itemsize > LAZY_BYTES
        if not lazy:
            return index.read()
        import dask
        import dask.array as da

        blocks = [
            da.from_delayed(
                dask.delayed(index.read)(s, min(s + chunk, n)),
                shape=(min(s + chunk, n) - s, *shape),
                dtype=dtype,
            )
            for s in range(0, n, chunk)
        ]
        return da.concatenate(blocks, axis=0)
    if suffix in (".tif", ".tiff"):
        shape, dtype, pages = _tiff_stack_shape(path)
        grey_pages = len(shape) == 3 and not looks_rgb(shape) and pages == shape[0]
        if lazy is None:
            lazy = int(np.prod(shape)) * dtype.itemsize > LAZY_BYTES
        if lazy and grey_pages:
            import dask
            import dask.array as da

            n = shape[0]
            blocks = [
                da.from_delayed(
                    dask.delayed(_read_tiff_frames)(path, s, min(s + chunk, n)),
                    shape=(min(s + chunk, n) - s, *shape[1:]),
                    dtype=dtype,
                )
                for s in range(0, n, chunk)
            ]
            return da.concatenate(blocks, axis=0)
    if suffix in FRAME_SUFFIXES:
        return _check_stack(read_image(path), str(path))
    raise ValueError(
        f"{path}: unsupported file type {suffix or '(none)'!r}; expected a video "
        f"({', '.join(VIDEO_SUFFIXES)}), a TIFF/PNG/NPY stack or a folder of frames"
    )
