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
    "as_frame",
    "as_grey",
    "as_real_array",
    "as_shape",
    "as_image",
    "as_mask",
    "check_int",
    "check_setting_ranges",
    "nearest_fill_index",
    "grey_if_equal_channels",
    "looks_rgb",
    "luminance",
    "positive_spacing",
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


def to_unit_float(image: Any, *, name: str = "image") -> np.ndarray:
    """Return ``image`` as float32 in ``[0, 1]``: the one intensity rule of the package.

    * bool: False 0, True 1;
    * unsigned integers: divided by the dtype's maximum (uint8 255 -> 1.0, uint16 65535 ->
      1.0), so that dim frames stay dim;
    * signed integers and floats: kept when already inside ``[0, 1]``, else min-max rescaled
      over the values present (a signed dtype has no agreed black and white level: an int16
      camera frame holding 0..4095 becomes 0..1, not 0.5..0.56);
    * a constant image outside ``[0, 1]`` becomes all zero.

    Every entry point (``cycsr simulate x.tif``, ``simulate_pcle(arr)``, training targets)
    applies this rule, so the same array gives the same result everywhere.

    Parameters
    ----------
    image : array-like
        Any real-valued image or stack.
    name : str
        Used in error messages.

    Returns
    -------
    ndarray
        float32 copy in ``[0, 1]``.

    Raises
    ------
    TypeError
        A dtype that is not real numeric.
    ValueError
        NaN or infinite values.

    Examples
    --------
    >>> to_unit_float(np.array([[0, 4095]], np.int16)).tolist()
    [[0.0, 1.0]]
    >>> to_unit_float(np.array([[0, 255]], np.uint8)).tolist()
    [[0.0, 1.0]]
    """
    image = np.asarray(image)
    if image.dtype == bool:
        return image.astype(np.float32)
    if image.dtype.kind == "u":
        return (image.astype(np.float64) / np.iinfo(image.dtype).max).astype(np.float32)
    if image.dtype.kind not in "if":
        raise TypeError(f"{name} must be a real numeric image, got dtype {image.dtype}")
    out = image.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if out.size == 0:
        return out.astype(np.float32)
    low, high = float(out.min()), float(out.max())
    if low >= 0.0 and high <= 1.0:
        return out.astype(np.float32)
    if high == low:
        return np.zeros(out.shape, dtype=np.float32)
    return ((out - low) / (high - low)).astype(np.float32)


def positive_spacing(value: Any, *, maximum: float = 1e6) -> float | None:
    """``value`` as a fibre spacing in pixels, or ``None`` when it is not one.

    A spacing is a real number (not a bool, string or list), finite, ``> 0`` and at most
    ``maximum``. Metadata read from files goes through this before any arithmetic.

    Examples
    --------
    >>> positive_spacing(3), positive_spacing("abc"), positive_spacing(0), positive_spacing(True)
    (3.0, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    number = float(value)
    if not (np.isfinite(number) and 0.0 < number <= maximum):
        return None
    return number


def as_real_array(data: Any, name: str = "array") -> np.ndarray:
    """``data`` as a real numeric ndarray (no copy when possible), or raise ``TypeError``.

    dask (and other lazy) arrays are computed; bool becomes uint8; complex, object, string
    and datetime dtypes are refused.
    """
    if hasattr(data, "compute") and not isinstance(data, np.ndarray):  # dask and friends
        data = data.compute()
    try:
        arr = np.asarray(data)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real numeric array, got {type(data).__name__}") from err
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr


def as_frame(
    image: Any, *, name: str = "frame", min_size: int = 1, what: str = "a fibre bundle"
) -> np.ndarray:
    """One grey 2-D frame as a float64 copy (the caller's array is never touched).

    Rules: real numeric (:func:`as_real_array`), the colour rule (:func:`as_grey`), 2-D,
    both sides at least ``min_size`` pixels, finite.

    Raises
    ------
    TypeError
        Not a real numeric array.
    ValueError
        Colour, not 2-D, too small (``"too small to hold {what}"``), NaN or inf.
    """
    arr = as_grey(as_real_array(image, name), name=name)
    if arr.ndim != 2:
        hint = (
            " (RGB/RGBA: convert to grey first)"
            if arr.ndim == 3 and arr.shape[-1] in (3, 4)
            else ""
        )
        raise ValueError(f"{name} must be a 2-D grey frame (H, W), got shape {arr.shape}{hint}")
    if min(arr.shape) < min_size:
        raise ValueError(f"{name} is too small to hold {what}: shape {arr.shape}")
    out = arr.astype(np.float64)  # a copy
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or inf; expected finite values")
    return out


def as_shape(shape: Any, name: str = "shape") -> tuple[int, int]:
    """A frame shape ``(H, W)`` of two positive integers, or raise.

    Examples
    --------
    >>> as_shape((64.0, 32))
    (64, 32)
    """
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a pair of ints (H, W), got {shape!r}") from exc
    if len(dims) != 2 or min(dims) < 1:
        raise ValueError(f"{name} must be two positive ints (H, W), got {shape!r}")
    if any(d != s for d, s in zip(dims, shape)):
        raise ValueError(f"{name} must hold integers, got {shape!r}")
    return dims  # type: ignore[return-value]


#: Largest value of the training settings that would otherwise only be bounded by memory or
#: patience (``--set consistency_steps=1000000000`` grew to 5 GB). The paper's values and
#: the defaults lie far inside; see docs/method.md for what each setting does.
SETTING_RANGES: dict[str, tuple[float, float]] = {
    "iterations": (1, 10_000_000),
    "d_steps": (1, 100),
    "batch_size": (1, 4096),
    "patch": (16, 4096),
    "warmup": (0, 10_000_000),
    "checkpoint_every": (0, 10_000_000),
    "preview_every": (0, 10_000_000),
    "consistency_steps": (0, 50),
    "learning_rate": (0.0, 1.0),
    "eps": (0.0, 1.0),
    "w_vec": (0.0, 1e6),
    "w_adv": (0.0, 1e6),
    "w_reg": (0.0, 1e6),
    "w_pix": (0.0, 1e6),
    "w_multi": (0.0, 1e6),
    "multi_frames": (1, 1000),
    "noise_sigma": (0.0, 10.0),
}


def check_setting_ranges(settings: Any) -> None:
    """Refuse a setting beyond :data:`SETTING_RANGES`, saying the allowed range.

    Parameters
    ----------
    settings : object
        Anything with attributes of those names (a ``TrainConfig``); missing ones and
        ``None`` are skipped. Types are checked by the caller.

    Raises
    ------
    ValueError
        ``"consistency_steps must be in [0, 50], got 1000000000"``.
    """
    for name, (low, high) in SETTING_RANGES.items():
        value = getattr(settings, name, None)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not low <= value <= high:
            raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")


def as_image(
    image: Any,
    *,
    name: str = "image",
    ndim: int | None = None,
    min_side: int = 1,
    finite: bool = True,
    hint: str = "",
) -> np.ndarray:
    """The one rule for an image or a stack: real numeric, grey, enough pixels, finite.

    * dtype: integers and floats; bool is read as 0/1 (uint8); complex, object, string and
      datetime arrays are refused (``TypeError``);
    * the colour rule (:func:`as_grey`): equal-channel RGB(A) is grey, true colour refused;
    * shape: exactly 2-D when ``ndim=2``, else at least 2-D ``(..., H, W)``; no axis of
      length 0; both frame sides at least ``min_side`` pixels;
    * values: no NaN or infinity (when ``finite``).

    Parameters
    ----------
    image : array-like
        numpy, dask (computed) or anything :func:`numpy.asarray` takes.
    name : str
        Used in the messages.
    ndim : {None, 2}
        2: one frame only.
    min_side : int
        Smallest frame side accepted.
    finite : bool
        Refuse NaN and infinite values.
    hint : str
        Appended to the message for a wrong number of dimensions.

    Returns
    -------
    ndarray
        The image (no copy when it already followed the rule; bool becomes uint8).

    Examples
    --------
    >>> as_image(np.zeros((4, 5), bool)).dtype
    dtype('uint8')
    >>> as_image(np.zeros(5))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: image must have at least 2 dimensions: ... got shape (5,)
    """
    arr = as_grey(as_real_array(image, name), name=name)
    shape = tuple(int(n) for n in arr.shape)
    if ndim == 2 and arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) image, got shape {shape}{hint}")
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must have at least 2 dimensions: a 2-D (H, W) image or a stack "
            f"(..., H, W), got shape {shape}{hint}"
        )
    if any(n == 0 for n in shape):
        raise ValueError(f"{name} is empty: shape {shape} has a zero-length axis")
    if min(shape[-2:]) < min_side:
        raise ValueError(f"{name} must be at least {min_side}x{min_side} pixels, got shape {shape}")
    if finite and arr.dtype.kind == "f":
        low, high = np.min(arr), np.max(arr)  # NaN propagates; +-inf shows in max / min
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"{name} contains NaN or infinite values; replace them first")
    return arr


def as_mask(
    mask: Any, shape: Any, *, name: str = "mask", allow_empty: bool = False
) -> np.ndarray | None:
    """The one rule for a field-of-view mask: bool (or numbers 0 and 1), one frame.

    Parameters
    ----------
    mask : array-like or None
        None passes through.
    shape : tuple of int
        The frame shape ``(H, W)`` it must have.
    name : str
        Used in the messages.
    allow_empty : bool
        Accept a mask that selects no pixel.

    Returns
    -------
    ndarray of bool or None

    Raises
    ------
    TypeError
        Neither bool nor numbers.
    ValueError
        Numbers other than 0 and 1, another shape, or no True pixel (unless
        ``allow_empty``).
    """
    if mask is None:
        return None
    if hasattr(mask, "compute") and not isinstance(mask, np.ndarray):
        mask = mask.compute()
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        if m.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be boolean (or 0/1 numbers), got dtype {m.dtype}")
        if not ((m == 0) | (m == 1)).all():
            raise ValueError(
                f"{name} must be boolean (or 0/1 numbers), got values other than 0 and 1 "
                "(an image passed as the mask?)"
            )
        m = m != 0
    shape = tuple(int(n) for n in shape)
    if m.shape != shape:
        raise ValueError(f"{name} must have the image's shape (H, W) = {shape}, got {m.shape}")
    if not allow_empty and not m.any():
        raise ValueError(f"{name} selects no pixel; expected at least one True pixel")
    return m


def check_int(
    value: Any,
    name: str,
    minimum: int,
    *,
    maximum: int | None = None,
    allow_none: bool = True,
) -> int | None:
    """``value`` as an int in ``[minimum, maximum]`` (bools are not numbers here), or raise.

    Examples
    --------
    >>> check_int(3, "tile", 1), check_int(None, "tile", 1)
    (3, None)
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name} must be an integer{' or None' if allow_none else ''}, got {value!r}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def nearest_fill_index(mask: np.ndarray | None) -> tuple[np.ndarray, ...] | None:
    """Index arrays mapping every pixel to its nearest pixel inside ``mask``.

    ``image[nearest_fill_index(mask)]`` replaces the outside of the field of view by the
    nearest inside pixel (no edge left for a filter or a network to see). None when there
    is no mask, nothing lies outside it or nothing inside it.
    """
    if mask is None or mask.all() or not mask.any():
        return None
    from scipy import ndimage

    idx = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
    return tuple(idx)
