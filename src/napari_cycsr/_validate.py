"""The input rules every entry point applies (API, CLI, widgets, readers).

One home for the checks that were scattered over the modules, in the spirit of
scikit-image's ``_shared/utils.py``: every function that takes an image applies the same rule
and says the same thing when the input is wrong.

The colour rule
---------------
An array is taken as colour when it has 3 or more dimensions, its last axis has 3 or 4 entries
(RGB or RGBA) and the two axes before it are both larger than 4 (``(H, W, 3)``,
``(T, H, W, 4)`` ...; a ``(T, H, 3)`` stack of 3-pixel-wide frames is not an image anyone
super-resolves). A colour array whose red, green and blue channels are equal everywhere is a
grey image saved by a camera or a viewer as RGB(A): it is read as grey (the red channel, in
its own dtype; alpha is ignored). A true colour image is refused with the fix, unless the
caller asks for a luminance conversion.

This module imports neither torch nor Qt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "COLOUR_FIX",
    "as_grey",
    "grey_if_equal_channels",
    "looks_rgb",
    "luminance",
    "to_unit_float",
]

#: What a user can do with a true colour image (appended to the error message).
COLOUR_FIX = (
    "convert it to grey first (Python: skimage.color.rgb2gray(image[..., :3]); "
    "napari: the widget's 'Convert to grey' button; CLI: save one channel)"
)

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601


def looks_rgb(shape: Any) -> bool:
    """True when an array of this shape holds RGB(A) colour samples on its last axis.

    Parameters
    ----------
    shape : tuple of int or array
        A shape, or an array whose shape is used.

    Returns
    -------
    bool

    Examples
    --------
    >>> looks_rgb((480, 640, 3)), looks_rgb((10, 480, 640, 4)), looks_rgb((5, 64, 64))
    (True, True, False)
    """
    if hasattr(shape, "shape"):
        shape = shape.shape
    shape = tuple(int(s) for s in shape)
    return len(shape) >= 3 and shape[-1] in (3, 4) and shape[-2] > 4 and shape[-3] > 4


def grey_if_equal_channels(image: np.ndarray) -> np.ndarray | None:
    """The grey image held in a colour array whose R, G and B channels are all equal.

    Parameters
    ----------
    image : ndarray
        ``(..., H, W, 3|4)`` array (see :func:`looks_rgb`).

    Returns
    -------
    ndarray or None
        The red channel (a view, in the input's dtype) when the three colour channels are
        equal everywhere (alpha ignored); ``None`` for a true colour image.
    """
    arr = np.asarray(image)
    red = arr[..., 0]
    if np.array_equal(red, arr[..., 1]) and np.array_equal(red, arr[..., 2]):
        return red
    return None


def luminance(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luminance of an ``(..., 3|4)`` colour array, float32 (alpha ignored)."""
    arr = np.asarray(image)
    return (arr[..., :3].astype(np.float32) @ _LUMA).astype(np.float32)


def as_grey(image: Any, *, name: str = "image", colour: str = "error") -> np.ndarray:
    """Apply the colour rule: grey stays, equal-channel RGB(A) becomes grey, colour is refused.

    Parameters
    ----------
    image : array-like
        Image or stack, grey ``(..., H, W)`` or colour ``(..., H, W, 3|4)``.
    name : str
        Used in the error message.
    colour : {"error", "luminance"}
        What to do with a true colour image: refuse it (default) or convert it to Rec. 601
        luminance (float32).

    Returns
    -------
    ndarray
        The grey image; the input itself (no copy) when it already was grey.

    Raises
    ------
    ValueError
        A true colour image with ``colour="error"``.

    Examples
    --------
    >>> rgba = np.zeros((8, 8, 4), np.uint8); rgba[..., :3] = 7; rgba[..., 3] = 255
    >>> as_grey(rgba).shape, int(as_grey(rgba)[0, 0])
    ((8, 8), 7)
    """
    if colour not in ("error", "luminance"):
        raise ValueError(f"colour must be 'error' or 'luminance', got {colour!r}")
    if not looks_rgb(getattr(image, "shape", ())):
        return image
    arr = np.asarray(image)
    grey = grey_if_equal_channels(arr)
    if grey is not None:
        return grey
    if colour == "luminance":
        return luminance(arr)
    raise ValueError(
        f"{name} of shape {arr.shape} is a colour (RGB{'A' if arr.shape[-1] == 4 else ''}) "
        f"image whose channels differ; expected a greyscale image or stack: {COLOUR_FIX}"
    )


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as float32 in ``[0, 1]``.

    Integer images are divided by their dtype's maximum (uint8 255 -> 1.0); float images
    already inside ``[0, 1]`` are kept; other float images are min-max rescaled.

    Parameters
    ----------
    image : ndarray
        Any real-valued image.

    Returns
    -------
    ndarray
        float32 copy in ``[0, 1]``.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        if info.min < 0:
            out = (image.astype(np.float64) - info.min) / (info.max - info.min)
        else:
            out = image.astype(np.float64) / info.max
        return out.astype(np.float32)
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"expected a real-valued image, got dtype {image.dtype}")
    out = image.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("image contains NaN or infinite values")
    low, high = float(out.min()), float(out.max())
    if low >= 0.0 and high <= 1.0:
        return out
    if high == low:
        return np.zeros_like(out)
    return ((out - low) / (high - low)).astype(np.float32)
