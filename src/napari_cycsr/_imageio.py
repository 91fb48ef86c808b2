"""Reading and writing images and stacks for the command line tool and the demo.

Formats: TIFF (``.tif``/``.tiff``, single images and multi-page stacks), PNG (2-D) and NumPy
``.npy`` files. TIFFs are read with :mod:`tifffile` and, when it cannot decode a file (for
example an LZW TIFF without :mod:`imagecodecs`), with Pillow. ``.npy`` files are loaded with
``allow_pickle=False``: a file holding Python objects is refused instead of being unpickled.

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

_TIFF = (".tif", ".tiff")


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


def _read_tiff(path: Path) -> tuple[np.ndarray, bool]:
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


def read_image(path: str | os.PathLike[str], *, grey: bool = False) -> np.ndarray:
    """Read a TIFF, PNG or NPY image or stack.

    Parameters
    ----------
    path : str or path-like
        ``.tif``/``.tiff`` (one page or a multi-page stack), ``.png`` or ``.npy`` file.
    grey : bool
        Convert a true colour (RGB/RGBA) image to greyscale luminance instead of refusing it.
        Colour files whose R, G and B channels are equal (grey camera frames saved as RGB or
        RGBA) are always read as grey, in their own dtype.

    Returns
    -------
    ndarray
        ``(H, W)`` image or ``(..., H, W)`` stack in the file's own dtype (float32 when a
        colour image was converted to grey).

    Raises
    ------
    ValueError
        Unsupported suffix, a colour image without ``grey=True``, a 1-D array, or an ``.npy``
        file holding Python objects.
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
    suffix = _check_suffix(path)
    if not path.is_file():
        raise OSError(f"{path}: no such file")
    if suffix in _TIFF:
        array, is_rgb = _read_tiff(path)
    elif suffix == ".png":
        try:
            array, is_rgb = _read_pillow(path)
        except OSError:
            raise
        except Exception as error:  # Pillow raises several types on bad data
            raise OSError(f"{path}: cannot read PNG ({error})") from error
    else:
        try:
            array = np.load(path, allow_pickle=False)
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
                if p.is_file() and _suffix(p) in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not files:
                raise ValueError(
                    f"{path}: folder holds no image ({', '.join(IMAGE_SUFFIXES)} files)"
                )
            found.extend(files)
        elif path.is_file():
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
