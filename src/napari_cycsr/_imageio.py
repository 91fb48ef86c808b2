"""Reading and writing images and stacks for the command line tool and the demo.

Formats: TIFF (``.tif``/``.tiff``, single images and multi-page stacks), PNG (2-D) and NumPy
``.npy`` files; for reading also videos (AVI, MP4 ... through PyAV, the ``video`` extra) and
folders of frames (a ``(T, H, W)`` stack in natural order), both by
:func:`napari_cycsr.video.read_video`. TIFFs are read with :mod:`tifffile` and, when it
cannot decode a file (for example an LZW TIFF without :mod:`imagecodecs`), with Pillow.
``.npy`` files are loaded with ``allow_pickle=False``: a file holding Python objects is
refused instead of being unpickled.

Every write is atomic: the data go to a temporary file in the destination folder, which is
then renamed over the destination, so a reader never sees a half-written file and an
interrupted write leaves the previous file intact.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from ._validate import as_grey, looks_rgb, to_unit_float

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "READ_SUFFIXES",
    "VIDEO_SUFFIXES",
    "atomic_path",
    "find_images",
    "read_image",
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
        from .video._io import read_video

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
