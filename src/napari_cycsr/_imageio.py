"""Reading and writing images and stacks for the command line tool and the demo.

Formats: TIFF (``.tif``/``.tiff``, single images and multi-page stacks), PNG (2-D) and NumPy
``.npy`` files; for reading also videos (AVI, MP4 ... through PyAV, the ``video`` extra) and
folders of frames (a ``(T, H, W)`` stack in natural order), both by
:func:`read_video` (also :func:`napari_cycsr.video.read_video`). Every video reader returns a
``(T, H, W)`` grey stack, numpy or (``lazy=True``) dask, under the project's colour rule
(:func:`napari_cycsr._validate.as_grey`); lossy video codecs store grey frames as YUV, whose
decoded R, G and B can differ by a level or two: such frames (every channel within 2 levels of
the others) are read from the luma plane. TIFFs are read with :mod:`tifffile` and, when it
cannot decode a file (for example an LZW TIFF without :mod:`imagecodecs`), with Pillow.
``.npy`` files are loaded with ``allow_pickle=False``: a file holding Python objects is
refused instead of being unpickled.

Every write is atomic: the data go to a temporary file in the destination folder, which is
then renamed over the destination, so a reader never sees a half-written file and an
interrupted write leaves the previous file intact.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from ._validate import as_grey, looks_rgb, to_unit_float

__all__ = [
    "FRAME_SUFFIXES",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "READ_SUFFIXES",
    "VIDEO_SUFFIXES",
    "atomic_path",
    "find_images",
    "frame_files",
    "is_video_path",
    "natural_key",
    "read_image",
    "read_video",
    "to_grey",
    "to_unit_float",
    "write_image",
    "write_npy",
    "write_text",
]

#: File name endings this module reads and writes (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy")

#: Default largest number of pixels (array elements) one file may decode to: 2**30, about
#: 4 GiB as float32. Raise it per call (``read_image(..., max_pixels=N)``) or for a session
#: with the environment variable ``NAPARI_CYCSR_MAX_PIXELS``.
MAX_PIXELS = 2**30
MAX_PIXELS_ENV = "NAPARI_CYCSR_MAX_PIXELS"

#: Largest decoded/stored size ratio a compression can reach (deflate: 1032:1, LZW: about
#: 2730:1, PackBits: 64:1; rounded up): a file claiming more is damaged or lying.
_MAX_RATIO = {"none": 1.0, "packbits": 70.0, "deflate": 1100.0, "lzw": 3000.0}

_TIFF = (".tif", ".tiff")

#: Video containers :func:`read_image` decodes with PyAV (lower case).
VIDEO_SUFFIXES: tuple[str, ...] = (
    ".avi", ".mp4", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".ogv",
)  # fmt: skip
#: File name endings :func:`read_image` and :func:`find_images` accept (images and videos).
READ_SUFFIXES: tuple[str, ...] = IMAGE_SUFFIXES + VIDEO_SUFFIXES


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _check_suffix(path: Path) -> str:
    suffix = _suffix(path)
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; "
            f"expected one of {', '.join(IMAGE_SUFFIXES)}"
        )
    return suffix


def _looks_rgb(array: np.ndarray) -> bool:
    """True for ``(..., H, W, 3|4)`` arrays, which hold colour channels rather than a stack."""
    return looks_rgb(array)


def to_grey(image: np.ndarray) -> np.ndarray:
    """Convert an ``(H, W, 3|4)`` RGB(A) image to grey: its one channel when the colour
    channels are equal, else Rec. 601 luminance (float32); a grey image is returned as is."""
    return as_grey(image, colour="luminance")


def _read_tiff(path: Path, max_pixels: int | None = None) -> tuple[np.ndarray, bool]:
    """Read a TIFF; returns (array, is_rgb)."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array = np.asarray(series.asarray())
            photometric = getattr(series.pages[0], "photometric", None)
            is_rgb = photometric is not None and int(photometric) == 2  # PHOTOMETRIC.RGB
            axes = str(getattr(series, "axes", ""))
        if is_rgb and "S" in axes and len(axes) == array.ndim:
            array = np.moveaxis(array, axes.index("S"), -1)  # colour samples last
        return array, is_rgb
    except Exception as tiff_error:  # fall back to Pillow for any decode issue
        _check_pillow_file(path, max_pixels)
        try:
            with warnings.catch_warnings():  # Pillow warns about what it then fails on
                warnings.simplefilter("ignore")
                return _read_pillow(path)
        except Exception:
            raise OSError(f"{path}: cannot read TIFF ({tiff_error})") from tiff_error


def _read_pillow(path: Path) -> tuple[np.ndarray, bool]:
    from PIL import Image, ImageSequence

    with Image.open(path) as img:
        frames = []
        is_rgb = False
        for frame in ImageSequence.Iterator(img):
            if frame.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                is_rgb = True
                frame = frame.convert("RGBA" if "A" in frame.mode else "RGB")
            elif frame.mode == "1":
                frame = frame.convert("L")
            frames.append(np.asarray(frame))
    if not frames:
        raise OSError(f"{path}: the file holds no image")
    array = frames[0] if len(frames) == 1 else np.stack(frames)
    return array, is_rgb


# --------------------------------------------------------------------------------------------
# size checks before decoding: a file cannot claim more pixels than its bytes can hold
# --------------------------------------------------------------------------------------------


def _max_pixels(max_pixels: int | None) -> tuple[int, str]:
    """The pixel cap in force and how the user raises it (for the error message)."""
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
            raise TypeError(f"max_pixels must be a whole number, got {max_pixels!r}")
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        return int(max_pixels), "pass a larger max_pixels"
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None or not raw.strip():
        return MAX_PIXELS, f"set {MAX_PIXELS_ENV} to a larger number of pixels"
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a whole number >= 1, got {raw!r}")
    return value, f"raise {MAX_PIXELS_ENV}"


def _check_claim(
    path: Path,
    shape: tuple[int, ...],
    itemsize: float,
    stored: int,
    compression: str | None,
    max_pixels: int | None,
) -> None:
    """Refuse a file whose header claims more pixels than the cap or than its bytes hold.

    ``stored``: bytes of pixel data in the file; ``compression``: a key of ``_MAX_RATIO``, or
    None for a codec without a known bound (only the pixel cap applies then).
    """
    cap, how = _max_pixels(max_pixels)
    pixels = int(np.prod(shape, dtype=np.float64)) if shape else 1
    dims = "x".join(str(int(n)) for n in shape)
    if pixels > cap:
        raise ValueError(
            f"{path}: the image is {dims} = {pixels} pixels, more than the limit of {cap} "
            f"pixels; {how} if the file really is that large"
        )
    if compression is None:
        return
    decoded = pixels * itemsize
    limit = max(stored, 1) * _MAX_RATIO[compression] + 4096
    if decoded > limit:
        raise ValueError(
            f"{path}: the header claims a {dims} image ({decoded:.0f} bytes) in a file of "
            f"{path.stat().st_size} bytes, which cannot hold it ({compression} compression); "
            "the file is truncated or damaged"
        )


def _check_npy_file(path: Path, max_pixels: int | None) -> None:
    """Empty, foreign or truncated ``.npy`` files -> one clear ``ValueError``."""
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: empty file (0 bytes); expected a .npy array")
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        except (ValueError, EOFError, OSError, SyntaxError) as error:
            kind = "truncated" if size < 128 else "damaged"
            raise ValueError(
                f"{path}: not a .npy array file, or its header is {kind} ({size} bytes): {error}"
            ) from None
        offset = handle.tell()
    if dtype.hasobject:
        return  # refused with its own message by np.load(allow_pickle=False)
    expected = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if size - offset < expected:
        raise ValueError(
            f"{path}: truncated .npy file: the header says shape {tuple(shape)} of {dtype} "
            f"({expected} bytes of data) but the file holds {size - offset}"
        )
    _check_claim(path, tuple(shape), dtype.itemsize, size - offset, None, max_pixels)


def _check_pillow_file(path: Path, max_pixels: int | None) -> None:
    """Size of a PNG (or a TIFF read by Pillow) against its file size, before decoding."""
    import warnings as _warnings

    from PIL import Image

    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # Pillow's own bomb warning: we say it better
        try:
            with Image.open(path) as img:
                width, height = img.size
                frames = int(getattr(img, "n_frames", 1) or 1)
                bands = len(img.getbands())
                bits = 16 if img.mode.startswith("I;16") else 8
                if img.mode in ("I", "F", "RGBa") or img.mode.startswith("I;32"):
                    bits = 32
                compression = "deflate" if img.format == "PNG" else None
        except Image.DecompressionBombError:
            raise ValueError(
                f"{path}: the header claims an image larger than Pillow decodes "
                f"({Image.MAX_IMAGE_PIXELS} pixels); the file is damaged or not an image"
            ) from None
        except Exception:
            return  # not for us to judge: the decoder says what is wrong
    shape = (frames, height, width) if frames > 1 else (height, width)
    itemsize = bands * bits / 8
    _check_claim(path, shape, itemsize, path.stat().st_size, compression, max_pixels)


_TIFF_CODECS = {1: "none", 32773: "packbits", 8: "deflate", 32946: "deflate", 5: "lzw"}


def _check_tiff_file(path: Path, max_pixels: int | None) -> None:
    """Pages of a TIFF against the file's bytes and the pixel cap, before decoding."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = tuple(int(n) for n in series.shape)
            itemsize = np.dtype(series.dtype).itemsize if series.dtype is not None else 1
            size = path.stat().st_size
            stored = 0
            codecs = set()
            for page in series.pages:
                if page is None:
                    continue
                for offset, count in zip(page.dataoffsets, page.databytecounts):
                    if offset + count > size:
                        raise ValueError(
                            f"{path}: truncated TIFF: image data at bytes {offset}..."
                            f"{offset + count} lie beyond the end of the file ({size} bytes)"
                        )
                    stored += int(count)
                codecs.add(_TIFF_CODECS.get(int(page.compression)))
    except ValueError as error:
        if "truncated TIFF" in str(error):
            raise
        return  # tifffile cannot parse it: the readers say what is wrong
    except Exception:
        return
    known = codecs - {None}
    codec = None if (None in codecs or not known) else max(known, key=_MAX_RATIO.__getitem__)
    _check_claim(path, shape, itemsize, stored, codec, max_pixels)


def read_image(
    path: str | os.PathLike[str], *, grey: bool = False, max_pixels: int | None = None
) -> np.ndarray:
    """Read a TIFF, PNG or NPY image or stack, a video, or a folder of frames.

    Parameters
    ----------
    path : str or path-like
        ``.tif``/``.tiff`` (one page or a multi-page stack), ``.png`` or ``.npy`` file; a
        video (``.avi``, ``.mp4`` ...; needs PyAV) or a folder of frame files, read as a
        ``(T, H, W)`` stack by :func:`napari_cycsr.video.read_video`.
    grey : bool
        Convert a true colour (RGB/RGBA) image to greyscale luminance instead of refusing it.
        Colour files whose R, G and B channels are equal (grey camera frames saved as RGB or
        RGBA) are always read as grey, in their own dtype.
    max_pixels : int, optional
        Largest number of pixels (array elements) the file may decode to; default
        :data:`MAX_PIXELS` (2**30), or the environment variable ``NAPARI_CYCSR_MAX_PIXELS``.
        The header is checked before anything is decoded: a file whose header claims more
        pixels than its bytes can hold (a truncated or forged file) is refused too.

    Returns
    -------
    ndarray
        ``(H, W)`` image or ``(..., H, W)`` stack in the file's own dtype (float32 when a
        colour image was converted to grey).

    Raises
    ------
    ValueError
        Unsupported suffix, a colour image without ``grey=True``, a 1-D array, an ``.npy``
        file holding Python objects, an empty or truncated file, or more pixels than
        ``max_pixels``.
    OSError
        The file is missing or cannot be decoded.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> _ = write_image(path, np.zeros((4, 5), np.float32))
    >>> read_image(path).shape
    (4, 5)
    """
    path = Path(path)
    if path.is_dir() or _suffix(path) in VIDEO_SUFFIXES:
        return np.asarray(read_video(path, lazy=False))  # a folder of frames, or a video
    suffix = _check_suffix(path)
    if not path.is_file():
        raise OSError(f"{path}: no such file")
    if suffix in _TIFF:
        _check_tiff_file(path, max_pixels)
        array, is_rgb = _read_tiff(path, max_pixels)
    elif suffix == ".png":
        _check_pillow_file(path, max_pixels)
        try:
            array, is_rgb = _read_pillow(path)
        except OSError:
            raise
        except Exception as error:  # Pillow raises several types on bad data
            raise OSError(f"{path}: cannot read PNG ({error})") from error
    else:
        _check_npy_file(path, max_pixels)
        try:
            array = np.load(path, allow_pickle=False)
        except (EOFError, OSError) as error:  # the checks above make this rare
            raise ValueError(f"{path}: truncated or damaged .npy file ({error})") from None
        except ValueError as error:
            raise ValueError(
                f"{path}: the .npy file holds Python objects; only plain numeric arrays are "
                "read (they are never unpickled)"
            ) from error
        if not isinstance(array, np.ndarray):
            raise ValueError(f"{path}: expected a single array (.npy), not an archive")
        is_rgb = _looks_rgb(array)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: expected a real-valued image, got dtype {array.dtype}")
    if is_rgb or (suffix != ".npy" and _looks_rgb(array)):
        if _looks_rgb(array):
            # equal R, G, B (a grey camera frame saved as RGB/RGBA) -> grey, always;
            # true colour: luminance when asked for, else the colour rule's error
            array = as_grey(array, name=str(path), colour="luminance" if grey else "error")
        elif not grey:
            raise ValueError(
                f"{path}: colour (RGB) image of shape {array.shape}; expected a greyscale "
                "image or stack (convert it to grey; a 3-frame stack must be saved as "
                "greyscale, e.g. tifffile.imwrite(..., photometric='minisblack'))"
            )
    if array.ndim < 2:
        raise ValueError(f"{path}: expected a 2-D image or a stack, got shape {array.shape}")
    return array


def find_images(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    Parameters
    ----------
    inputs : iterable of path-like
        Image files, or folders whose image files (by suffix, not recursive; hidden files such
        as interrupted temporary writes are skipped) are taken.

    Returns
    -------
    list of Path
        Files in the given order; each folder's files sorted by name.

    Raises
    ------
    OSError
        A path does not exist.
    ValueError
        A file has an unsupported suffix, a folder holds no image, or nothing was given.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and _suffix(p) in READ_SUFFIXES and not p.name.startswith(".")
            )
            if not files:
                raise ValueError(
                    f"{path}: folder holds no image ({', '.join(READ_SUFFIXES)} files)"
                )
            found.extend(files)
        elif path.is_file():
            if _suffix(path) not in READ_SUFFIXES:
                _check_suffix(path)
            found.append(path)
        else:
            raise OSError(f"{path}: no such file or folder")
    if not found:
        raise ValueError("no input image given")
    return found


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_npy(path: str | os.PathLike[str], array: Any) -> Path:
    """Write any real array (for example fibre values, ``(N,)`` or ``(T, N)``) as ``.npy``.

    The write is atomic and the file is plain (``allow_pickle=False``).

    Parameters
    ----------
    path : path-like
        Destination ending in ``.npy``.
    array : array-like
        Real-valued array of any shape.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if _suffix(path) != ".npy":
        raise ValueError(f"{path}: expected a file name ending in .npy")
    data = np.ascontiguousarray(np.asarray(array))
    if data.dtype.kind not in "biuf":
        raise ValueError(f"expected a real-valued array, got dtype {data.dtype}")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, data, allow_pickle=False)
    return path


def write_image(path: str | os.PathLike[str], image: Any) -> Path:
    """Write an image or stack atomically; the format follows the suffix.

    Parameters
    ----------
    path : path-like
        ``.tif``/``.tiff`` (any real dtype, stacks as multi-page TIFF, float32 kept), ``.npy``
        (any real dtype) or ``.png`` (2-D only: uint8/uint16 written as is; floats are clipped
        to ``[0, 1]`` and stored as 16-bit, so PNG is for viewing, not for results).
    image : array-like
        ``(H, W)`` image or ``(..., H, W)`` stack (a dask array is computed).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        Unsupported suffix, empty or non-real array, or a stack written as PNG.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    array = np.asarray(image)
    if array.ndim < 2 or array.size == 0:
        raise ValueError(f"expected a non-empty 2-D image or stack, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"expected a real-valued image, got dtype {array.dtype}")
    if array.dtype.kind == "f" and array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32)
    with atomic_path(path) as tmp:
        if suffix in _TIFF:
            import tifffile

            tifffile.imwrite(tmp, np.ascontiguousarray(array), photometric="minisblack")
        elif suffix == ".npy":
            with open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        else:
            _write_png(tmp, array)
    return path


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    if array.ndim != 2:
        raise ValueError(f"PNG holds one 2-D image; got shape {array.shape} (use .tif for stacks)")
    if array.dtype == np.uint8:
        data = array
    elif array.dtype == bool:
        data = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        data = array
    elif np.issubdtype(array.dtype, np.integer):
        data = np.clip(array, 0, 65535).astype(np.uint16)
    else:
        data = np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 65535).astype(np.uint16)
    Image.fromarray(data).save(path, format="PNG")


# --------------------------------------------------------------------------------------------
# videos: multi-page TIFF, a folder of frames, AVI/MP4/... through PyAV, lazily
# --------------------------------------------------------------------------------------------

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
