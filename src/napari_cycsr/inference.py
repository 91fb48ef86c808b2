"""Inference: apply a trained :class:`~napari_cycsr.models.SRModel` to images and stacks.

One implementation, :func:`iter_super_resolve`, is a generator of :class:`Progress` events
that returns the result (so napari's ``thread_worker`` emits it as ``returned`` and a GUI can
cancel between batches by closing the generator). :func:`super_resolve` is the plain-call
wrapper with an optional progress callback.

Tiling. The generator is fully convolutional and its BatchNorm layers use running statistics
in eval mode, so an output pixel depends only on the input pixels within the network's
receptive-field radius (:func:`receptive_radius`). Large images are cut into overlapping
windows of ``tile`` x ``tile`` input pixels; each window contributes only its centre, at least
``overlap`` pixels away from any window edge that is not an image edge. Windows that would
cross the image border are shifted inward instead of padded. With ``overlap`` at least the
receptive radius (the default) the tiled result equals the whole-image result up to
floating-point rounding; there is no blending and no seam.

Borders. Each frame is first extended by the network's receptive radius on every side by
mirror reflection (after the outside of the field of view, when known, is filled with the
nearest pixel inside it), and the output cropped back: no output pixel sees the zero padding
of the convolutions, which a trained network answers with stripes along the frame border
where a bundle runs past the camera frame.

Speed. Each run works on a private copy of the generator (a few MB; the caller's model is
never changed): eval mode, every BatchNorm folded into the conv before it (exact: eval-mode
BatchNorm is a per-channel affine map), channels-last layout on CPU and CUDA, and autocast
to bfloat16 or float16 where it pays (``precision``, :mod:`napari_cycsr._device`). CPU
threads follow the machine's load (``threads``). Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import copy
import math
import uuid
from collections.abc import Callable, Iterator
from collections.abc import Generator as GeneratorType
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ._device import (
    autocast,
    available_devices,
    check_precision,
    check_threads,
    memory_format,
    resolve_device,
    resolve_precision,
    thread_scope,
)
from ._progress import drain
from ._validate import (
    as_image,
    as_mask,
    check_int,
    looks_rgb,
    nearest_fill_index,
    positive_spacing,
)
from .config import DEFAULT_ENSEMBLE, ENSEMBLE_SIZES
from .data import dihedral, resample_frame, spacing_zoom, undo_dihedral, zoomed_shape
from .fibres import FibreBundle
from .models import SRModel

__all__ = [
    "AUTO_TILE",
    "AUTO_TILE_THRESHOLD",
    "Progress",
    "available_devices",
    "check_image",
    "check_model_spacing",
    "estimate_tli_spacing",
    "fov_from_image",
    "iter_super_resolve",
    "receptive_radius",
    "resolve_device",
    "super_resolve",
]

#: Images with more pixels than this per frame are tiled automatically (``tile=None``).
AUTO_TILE_THRESHOLD = 1024 * 1024
#: Window size used by automatic tiling.
AUTO_TILE = 512
#: A forward pass holds at most this many input pixels (unless one window is larger).
_MAX_BATCH_PIXELS = 4 * 512 * 512
#: Smallest useful tile centre (px) when out-of-memory retries shrink the tile.
_MIN_CORE = 16


class Progress(NamedTuple):
    """A progress event of :func:`iter_super_resolve`: ``done`` of ``total`` windows."""

    done: int
    total: int


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _is_dask(image: Any) -> bool:
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    return isinstance(image, da.Array)


def check_image(image: Any, *, name: str = "image", check_finite: bool = True) -> Any:
    """Validate a greyscale image or stack ``(..., H, W)`` and return it as an array.

    The package's one image rule (:func:`napari_cycsr._validate.as_image`): at least 2
    dimensions, none of size 0; a real numeric dtype (integer or float; bool is read as
    0/1; complex, object, string and datetime dtypes are refused); no NaN or infinity
    (checked for numpy input only: dask input stays lazy); the colour rule (equal-channel
    RGB(A) is grey, true colour is refused).

    Parameters
    ----------
    image : array-like
        numpy array, dask array, or anything :func:`numpy.asarray` accepts.
    name : str
        Used in error messages.
    check_finite : bool
        Refuse NaN and infinite values (numpy input).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The same array (no copy for numpy and dask input; bool numpy input becomes uint8).

    Raises
    ------
    TypeError
        For an unsupported dtype.
    ValueError
        For a wrong shape, RGB(A) data or non-finite values.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not _is_dask(image):
        return as_image(image, name=name, finite=check_finite)
    # dask: the same rule on what is known without computing (dtype and shape)
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {dtype}")
    shape = tuple(int(s) for s in image.shape)
    if len(shape) < 2:
        raise ValueError(
            f"{name} must have at least 2 dimensions: a 2-D (H, W) image or a stack "
            f"(..., H, W), got shape {shape}"
        )
    if any(s == 0 for s in shape):
        raise ValueError(f"{name} is empty: shape {shape} has a zero-length axis")
    if looks_rgb(shape):
        raise ValueError(
            f"{name} of shape {shape} looks like an RGB(A) image (last axis of {shape[-1]}); "
            "super-resolution works on greyscale (..., H, W): convert to grey first (e.g. "
            "skimage.color.rgb2gray) or pass one channel"
        )
    return image


def _check_model(model: Any) -> SRModel:
    if not isinstance(model, SRModel):
        hint = ""
        if isinstance(model, nn.Module):
            hint = " (wrap a generator as SRModel(generator, normalisation=...))"
        elif isinstance(model, str) or hasattr(model, "__fspath__"):
            hint = " (load the file first with napari_cycsr.io.load_model(path))"
        raise TypeError(f"model must be an SRModel, got {type(model).__name__}{hint}")
    return model


def fov_from_image(image: Any) -> np.ndarray | None:
    """The field of view of a reconstructed bundle image, guessed from its zero surround.

    A TLI image (what ``cycsr reconstruct`` and every pCLE system write) is exactly zero
    outside the bundle. The FOV is the largest connected region of pixels that are non-zero
    in any frame (the first frame of a dask stack), with its holes filled (dark scene content
    inside the bundle is kept).

    Parameters
    ----------
    image : array-like, shape (..., H, W)
        Image or stack (dask: only the first frame is computed).

    Returns
    -------
    ndarray of bool, shape (H, W), or None
        None when the frame has no zero surround (under 1 % of it is zero), or nothing
        non-zero: there is no edge to handle.

    Examples
    --------
    >>> img = np.zeros((32, 32), np.float32); img[4:28, 6:26] = 0.5; img[10, 10] = 0
    >>> fov = fov_from_image(img)
    >>> int(fov.sum()), bool(fov[10, 10])
    (480, True)
    """
    from scipy import ndimage

    if _is_dask(image):
        image = image[(0,) * (image.ndim - 2)].compute()
    arr = np.asarray(image)
    nonzero = (np.isfinite(arr) & (arr != 0)).reshape(-1, *arr.shape[-2:]).any(axis=0)
    if nonzero.mean() > 0.99 or not nonzero.any():
        return None
    labels, n = ndimage.label(nonzero)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    fov = ndimage.binary_fill_holes(labels == int(sizes.argmax()))
    return None if fov.mean() > 0.99 else fov


def _check_mask(mask: Any, shape: tuple[int, int], image: Any = None) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, str):
        if mask != "auto":
            raise ValueError(f"mask must be an array, None or 'auto', got {mask!r}")
        return None if image is None else fov_from_image(image)
    return as_mask(mask, shape)


class _Projection(NamedTuple):
    """Consistency projection of the output (see :mod:`napari_cycsr.consistency`)."""

    bundle: FibreBundle
    values: np.ndarray | None  # (*lead, N) measured values, or None: sample the input frames
    iterations: int | None  # None: the projection's default for its noise setting
    noise: Any = "auto"  # "auto", None (exact fit) or a noise level (consistency.py)

    def subset(self, rows: tuple[slice, ...]) -> _Projection:
        """The projection of a chunk of frames (``rows`` index the leading axes)."""
        values = None if self.values is None else self.values[rows]
        return self._replace(values=values)

    def apply(self, out: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Project ``out`` (n, H*s, W*s) using the values of the input ``frames`` (n, H, W)."""
        from .consistency import project_consistent

        if self.values is None:
            values = self.bundle.sample(frames)
        else:
            values = self.values.reshape(frames.shape[0], self.bundle.n_fibres)
        return project_consistent(
            out, self.bundle, values, iterations=self.iterations, noise=self.noise
        )


def _check_projection(
    bundle: Any, values: Any, iterations: Any, shape: tuple[int, ...], noise: Any = "auto"
) -> _Projection | None:
    if bundle is None:
        if values is not None:
            raise ValueError("values needs bundle: the values are those of the bundle's fibres")
        return None
    if not isinstance(bundle, FibreBundle):
        raise TypeError(f"bundle must be a FibreBundle or None, got {type(bundle).__name__}")
    frame = tuple(int(n) for n in shape[-2:])
    if bundle.shape != frame:
        raise ValueError(
            f"the fibre bundle's grid {bundle.shape} differs from the image's frame shape "
            f"{frame}; expected the bundle the image was reconstructed with"
        )
    iterations = check_int(iterations, "project_iterations", 0)
    if not (noise is None or (isinstance(noise, str) and noise == "auto")):
        if isinstance(noise, bool) or not isinstance(noise, (int, float, np.number)):
            raise TypeError(f"project_noise must be 'auto', None or a number, got {noise!r}")
        if not (math.isfinite(float(noise)) and noise >= 0):
            raise ValueError(f"project_noise must be a finite number >= 0, got {noise!r}")
        noise = float(noise)
    if values is not None:
        if _is_dask(values):
            values = values.compute()
        values = np.asarray(values)
        if values.dtype.kind not in "iuf":
            raise TypeError(f"values must be a real numeric array, got dtype {values.dtype}")
        expected = (*(int(n) for n in shape[:-2]), bundle.n_fibres)
        if values.shape != expected:
            raise ValueError(
                f"values must have shape {expected} (one value per fibre for each frame), "
                f"got {values.shape}"
            )
    return _Projection(bundle, values, iterations, noise)


# --------------------------------------------------------------------------------------------
# network geometry
# --------------------------------------------------------------------------------------------


def receptive_radius(model: SRModel | nn.Module) -> int:
    """Receptive-field radius of the generator, in input pixels.

    An output pixel depends only on input pixels at most this far away (Chebyshev
    distance), so tiles that overlap by at least this much reproduce the whole-image result.

    Parameters
    ----------
    model : SRModel or torch.nn.Module
        The model or its generator.

    Returns
    -------
    int
        Sum of the convolution radii (plus one pixel for the bilinear skip of scale > 1
        models), each divided by the upsampling factor of the grid it runs on.
    """
    net = model.generator if isinstance(model, SRModel) else model
    scale = 1
    radius = 0.0
    for module in net.modules():  # registration order == forward order for Generator
        if isinstance(module, nn.PixelShuffle):
            scale *= module.upscale_factor
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size
            d = module.dilation
            reach = max((k[0] - 1) // 2 * d[0], (k[1] - 1) // 2 * d[1])
            radius += reach / scale
    if scale > 1:
        radius += 1  # bilinear upsampling of the residual base
    return int(math.ceil(radius - 1e-9))


def _segments(
    length: int, window: int, overlap: int, margin: int = 0
) -> list[tuple[int, int, int, int]]:
    """Windows ``(ws, we)`` of size ``window`` and the core ``(cs, ce)`` each one fills.

    The cores tile ``[margin, length - margin)``: the ``margin`` on both ends (the mirrored
    border) is context only. Each window holds ``overlap`` pixels of context around its
    core, except where the axis ends.
    """
    stop = length - margin
    if window >= length:
        return [(0, length, margin, stop)]
    segments = []
    start = margin
    while True:
        ws = max(0, start - overlap)
        we = ws + window
        if we >= length:
            ws, we, ce = length - window, length, stop
        else:
            ce = min(we - overlap, stop)
        segments.append((ws, we, start, ce))
        if ce >= stop:
            return segments
        start = ce


def _plan(
    n_frames: int,
    shape: tuple[int, int],
    tile: int,
    overlap: int,
    first_frame: int = 0,
    margin: int = 0,
) -> list[tuple[int, tuple[int, int, int, int], tuple[int, int, int, int]]]:
    h, w = shape
    ys = _segments(h, min(tile, h), overlap, margin)
    xs = _segments(w, min(tile, w), overlap, margin)
    return [(f, sy, sx) for f in range(first_frame, n_frames) for sy in ys for sx in xs]


# --------------------------------------------------------------------------------------------
# the computation
# --------------------------------------------------------------------------------------------


def _oom_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    for owner, attr in ((torch, "OutOfMemoryError"), (torch.cuda, "OutOfMemoryError")):
        err = getattr(owner, attr, None)
        if isinstance(err, type) and err not in errors:
            errors.append(err)
    return tuple(errors)


def _prepare_network(model: SRModel, device: torch.device) -> nn.Module:
    """A private copy of the generator on ``device``, in eval mode and the fastest layout.

    Copying (a few MB) leaves the caller's model untouched: its device, layout and training
    mode stay as they were, and concurrent runs (dask threads) never share a module.
    """
    net = copy.deepcopy(model.generator)
    for p in net.parameters():
        p.requires_grad_(False)
        p.grad = None
    net.eval()
    _fold_batch_norm(net)
    return net.to(device=device, memory_format=memory_format(device))


def _fold_batch_norm(net: nn.Module) -> None:
    """Fold every eval-mode BatchNorm that directly follows a conv into that conv, in place.

    In eval mode BatchNorm is a fixed per-channel affine map, so ``bn(conv(x))`` equals one
    conv with rescaled weights and a bias: the same result up to rounding, one memory-bound
    pass less per layer (about a fifth of the generator's CPU time).
    """
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        layers = list(module)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
                and bn.running_mean is not None
                and conv.out_channels == bn.num_features
            ):
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()


def _ensemble_transforms(size: int) -> tuple[tuple[int, bool], ...]:
    """The ``(quarter turns, mirror)`` pairs of a self-ensemble of ``size`` members.

    1: the image as it is; 2: it and its mirror image; 4: its four quarter turns; 8: the
    four quarter turns of it and of its mirror image (the whole dihedral group).
    """
    if size == 1:
        return ((0, False),)
    if size == 2:
        return ((0, False), (0, True))
    if size == 4:
        return tuple((k, False) for k in range(4))
    if size == 8:
        return tuple((k, f) for k in range(4) for f in (False, True))
    raise ValueError(f"ensemble must be one of {ENSEMBLE_SIZES}, got {size!r}")


def _forward(
    net: nn.Module,
    batch: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype | None,
    ensemble: int = 1,
) -> torch.Tensor:
    """The network on ``batch``; with ``ensemble`` > 1 the mean of its outputs on the
    ``ensemble`` quarter turns / mirror images of the batch, each turned back."""
    batch = batch.to(device, non_blocking=True)
    total: torch.Tensor | None = None
    transforms = _ensemble_transforms(ensemble)
    with torch.inference_mode(), autocast(device, dtype):
        for k, flip in transforms:
            x = dihedral(batch, k, flip).contiguous(memory_format=memory_format(device))
            y = undo_dihedral(net(x).float(), k, flip)
            total = y if total is None else total.add_(y)
    assert total is not None
    return total / len(transforms) if len(transforms) > 1 else total


def check_ensemble(ensemble: Any) -> int:
    """``ensemble`` as an int of :data:`~napari_cycsr.config.ENSEMBLE_SIZES`, else an error."""
    if isinstance(ensemble, bool) or not isinstance(ensemble, (int, np.integer)):
        raise TypeError(f"ensemble must be one of {ENSEMBLE_SIZES}, got {ensemble!r}")
    if int(ensemble) not in ENSEMBLE_SIZES:
        raise ValueError(
            f"ensemble must be one of {ENSEMBLE_SIZES} (the image, and its mirror image / "
            f"quarter turns), got {ensemble!r}"
        )
    return int(ensemble)


def estimate_tli_spacing(image: Any, *, mask: Any = None) -> float:
    """Fibre spacing of a TLI reconstruction, estimated from the image alone.

    A triangulated linear interpolation is flat inside each Delaunay triangle and bends
    along the triangle edges, so the magnitude of its Laplacian draws the fibre lattice
    whatever the scene; the peak of that pattern's power spectrum
    (:func:`~napari_cycsr.fibres.estimate_spacing`) gives the hexagonal lattice spacing, and
    0.84 of it the median nearest-neighbour distance of the fibres (what
    ``FibreBundle.spacing`` and a model's ``metadata["fibre_spacing"]`` hold; 0.83 for the
    jittered lattices of ``simulate_pcle``, about 0.85 on real bundles).

    Parameters
    ----------
    image : array_like, shape (H, W)
        A TLI image (the first frame of a stack).
    mask : array_like of bool, optional
        Field of view (default: the nonzero pixels).

    Returns
    -------
    float
        Median nearest-neighbour fibre spacing, in pixels.

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle
    >>> sim = simulate_pcle(data.camera() / 255.0, spacing=4.0, seed=0)
    >>> round(estimate_tli_spacing(sim.lr, mask=sim.mask) / sim.bundle.spacing, 1)
    1.0
    """
    from scipy import ndimage

    from .fibres import estimate_spacing

    frame = np.asarray(image, dtype=np.float64)
    if frame.ndim != 2:
        raise ValueError(f"image must be one 2-D frame, got shape {frame.shape}")
    m = frame != 0 if mask is None else np.asarray(mask, dtype=bool)
    inner = ndimage.binary_erosion(m, iterations=3)
    if inner.sum() < 64:
        raise ValueError("the field of view is too small to estimate the fibre spacing")
    curvature = np.abs(ndimage.laplace(frame))
    return 0.84 * estimate_spacing(curvature, mask=inner)


def _mirror(frame: np.ndarray, pad: int) -> np.ndarray:
    """``frame`` extended by ``pad`` pixels on every side by mirror reflection."""
    if pad <= 0:
        return frame
    return np.pad(frame, pad, mode="symmetric")


def _run_numpy(
    model: SRModel,
    image: np.ndarray,
    *,
    device: torch.device,
    tile: int,
    overlap: int,
    batch: int,
    mask: np.ndarray | None,
    precision: str,
    projection: _Projection | None = None,
    zoom: float = 1.0,
    ensemble: int = 1,
) -> GeneratorType[Progress, None, np.ndarray]:
    lead, (h, w) = image.shape[:-2], image.shape[-2:]
    n_frames = int(np.prod(lead)) if lead else 1
    s = model.scale
    dtype = resolve_precision(precision, device)
    net = _prepare_network(model, device)
    # spacing normalisation: the network runs on frames resampled by `zoom` (the model's
    # fibre spacing over the input's) and its output is resampled back
    rh, rw = zoomed_shape((h, w), zoom)
    # frames are mirrored by the receptive radius on every side, so that no output pixel
    # sees the convolutions' zero padding (a trained network draws stripes along it)
    pad = receptive_radius(model)
    ph, pw = rh + 2 * pad, rw + 2 * pad
    if tile >= max(h, w):  # a whole frame per window: the whole mirrored frame
        tile = max(ph, pw)
    out = np.empty((n_frames, ph * s, pw * s), dtype=np.float32)
    oom = _oom_errors()
    # The network was trained on patches inside the field of view; the hard edge between a
    # circular bundle image and the zeros around it is new to it and comes out as a ring.
    # Outside pixels are replaced by their nearest inside pixel (no edge) and masked after.
    fov = mask if mask is not None else (projection.bundle.fov_mask if projection else None)
    fill = nearest_fill_index(fov)
    filled: dict[int, np.ndarray] = {}  # the current frame, filled once for all its windows

    def frame(f: int) -> np.ndarray:
        if f not in filled:
            data = np.asarray(image[np.unravel_index(f, lead)] if lead else image)
            if fill is not None:
                data = data[fill]
            if (rh, rw) != (h, w):
                data = resample_frame(data, (rh, rw))
            filled.clear()
            filled[f] = _mirror(data, pad)
        return filled[f]

    jobs = _plan(n_frames, (ph, pw), tile, overlap, margin=pad)
    window_pixels = min(tile, ph) * min(tile, pw)
    batch = max(1, min(batch, _MAX_BATCH_PIXELS // window_pixels))
    pos = 0
    done = 0
    total = len(jobs)
    yield Progress(done, total)
    while pos < len(jobs):
        chunk = jobs[pos : pos + batch]
        windows = np.stack([frame(f)[sy[0] : sy[1], sx[0] : sx[1]] for f, sy, sx in chunk])
        x = model.normalise(torch.from_numpy(windows.astype(np.float32, copy=False))[:, None])
        try:
            y = _forward(net, x, device, dtype, ensemble)
        except oom:
            y = None  # leave the except block first so the failed pass's tensors are freed
        if y is None:
            del x
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if batch > 1:  # first try fewer windows at once
                batch = max(1, batch // 2)
                continue
            smaller = min(tile, max(ph, pw)) // 2
            if smaller - 2 * overlap < _MIN_CORE:
                raise RuntimeError(
                    f"{device.type.upper()} ran out of memory even for one "
                    f"{min(tile, ph)}x{min(tile, pw)} window (overlap {overlap}): free memory on "
                    "the device (close other programs or models), pass a smaller overlap, or "
                    "use device='cpu'"
                )
            # frames before the interrupted one are complete: re-plan the rest, smaller tiles
            tile = smaller
            jobs = _plan(n_frames, (ph, pw), tile, overlap, chunk[0][0], margin=pad)
            pos = 0
            total = done + len(jobs)
            continue
        y = model.denormalise(y).cpu().numpy()
        for (f, sy, sx), pred in zip(chunk, y):
            (wy0, _, cy0, cy1), (wx0, _, cx0, cx1) = sy, sx
            out[f, cy0 * s : cy1 * s, cx0 * s : cx1 * s] = pred[
                0, (cy0 - wy0) * s : (cy1 - wy0) * s, (cx0 - wx0) * s : (cx1 - wx0) * s
            ]
        pos += len(chunk)
        done += len(chunk)
        yield Progress(done, total)

    if pad:
        out = np.ascontiguousarray(out[:, pad * s : (pad + rh) * s, pad * s : (pad + rw) * s])
    if (rh, rw) != (h, w):
        out = np.stack([resample_frame(o, (h * s, w * s)) for o in out])
    if projection is not None:
        out = projection.apply(out, image.reshape(n_frames, h, w))
    if mask is not None:
        if s > 1:
            mask = np.repeat(np.repeat(mask, s, axis=0), s, axis=1)
        out[:, ~mask] = 0.0
    return out.reshape(*lead, h * s, w * s)


def _consume(gen: Iterator[Progress], progress: Callable[[int, int], Any] | None) -> Any:
    return drain(gen, None if progress is None else lambda e: progress(e.done, e.total))


def _dask_block(
    block: np.ndarray,
    *,
    model: SRModel,
    device: str | torch.device,
    tile: int,
    overlap: int,
    batch: int,
    mask: np.ndarray | None,
    precision: str,
    projection: _Projection | None = None,
    zoom: float = 1.0,
    ensemble: int = 1,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    block = check_image(block, name="image block")
    if projection is not None and projection.values is not None:
        # this chunk's rows of the measured values, found from the chunk's place in the stack
        location = block_info[0]["array-location"][:-2] if block_info else []
        rows = tuple(slice(start, stop) for start, stop in location)
        projection = projection.subset(rows)
    gen = _run_numpy(
        model,
        block,
        device=resolve_device(device),
        tile=tile,
        overlap=overlap,
        batch=batch,
        mask=mask,
        precision=precision,
        projection=projection,
        zoom=zoom,
        ensemble=ensemble,
    )
    return _consume(gen, None)


def _lazy_result(model: SRModel, image: Any, **kwargs: Any) -> GeneratorType[Progress, None, Any]:
    """dask path: whole frames per chunk, one numpy run per chunk, lazy output, no events."""
    ndim = image.ndim
    s = model.scale
    image = image.rechunk({ndim - 2: -1, ndim - 1: -1})
    chunks = image.chunks[:-2] + ((image.shape[-2] * s,), (image.shape[-1] * s,))
    result = image.map_blocks(
        _dask_block,
        dtype=np.float32,
        chunks=chunks,
        meta=np.empty((0,) * ndim, dtype=np.float32),
        name=f"cycsr-super-resolve-{uuid.uuid4().hex}",
        model=model,
        **kwargs,
    )
    return result
    yield  # pragma: no cover - unreachable; makes this a generator that only returns


def _spacing_zoom(
    model: SRModel,
    image: Any,
    spacing: Any,
    bundle: FibreBundle | None,
    mask: np.ndarray | None,
    match: Any,
) -> float:
    """Resampling factor that brings the input's fibre spacing to the model's (or 1)."""
    if not isinstance(match, bool):
        raise TypeError(f"match_spacing must be True or False, got {match!r}")
    given: float | None = None
    if isinstance(spacing, str):
        if spacing != "auto":
            raise ValueError(f"spacing must be a number, 'auto' or None, got {spacing!r}")
    elif spacing is not None:
        if isinstance(spacing, bool) or not isinstance(spacing, (int, float, np.number)):
            raise TypeError(f"spacing must be a number, 'auto' or None, got {spacing!r}")
        if not (math.isfinite(float(spacing)) and spacing > 0):
            raise ValueError(f"spacing must be a positive number of pixels, got {spacing!r}")
        given = float(spacing)
    trained = model.metadata.get("fibre_spacing") if isinstance(model.metadata, dict) else None
    if not match or not trained:
        return 1.0
    if given is None and spacing == "auto":
        first = image[(0,) * (image.ndim - 2)] if image.ndim > 2 else image
        if _is_dask(first):
            first = first.compute()
        fov = mask if mask is not None else (bundle.fov_mask if bundle is not None else None)
        given = estimate_tli_spacing(np.asarray(first), mask=fov)
    elif given is None and bundle is not None:
        given = bundle.spacing
    if given is None:
        return 1.0
    return spacing_zoom(float(trained), given)


def iter_super_resolve(
    model: SRModel,
    image: Any,
    *,
    device: str | torch.device = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    batch: int = 4,
    mask: Any = None,
    amp: bool = True,
    bundle: FibreBundle | None = None,
    values: Any = None,
    project_iterations: int | None = None,
    project_noise: Any = "auto",
    spacing: float | str | None = None,
    match_spacing: bool = True,
    precision: str = "auto",
    threads: int | None = None,
    ensemble: int = DEFAULT_ENSEMBLE,
) -> GeneratorType[Progress, None, Any]:
    """Super-resolve step by step: a generator of :class:`Progress` that returns the result.

    Same parameters and result as :func:`super_resolve`. Arguments are validated when this
    function is called; the work happens while the returned generator is iterated. It first
    yields ``Progress(0, total)``, then one event per batch of windows; its return value (the
    ``value`` of :class:`StopIteration`) is the output array. Closing the generator (stopping
    the iteration) cancels the work between two batches. For dask input no events are
    yielded and the lazy result is returned at once. After a CUDA out-of-memory retry with
    smaller tiles ``total`` may grow; ``done`` never decreases.

    In napari, wrap it so the worker's ``returned`` signal carries the result::

        @thread_worker
        def work():
            return (yield from iter_super_resolve(model, image))

    Returns
    -------
    generator
        Yields :class:`Progress` ``(done, total)``; returns the array described in
        :func:`super_resolve`.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_cycsr.models import SRModel
    >>> gen = iter_super_resolve(SRModel.new("tiny"), np.zeros((3, 32, 32)), device="cpu")
    >>> events = []
    >>> while True:
    ...     try:
    ...         events.append(next(gen))
    ...     except StopIteration as stop:
    ...         result = stop.value
    ...         break
    >>> result.shape, events[-1]
    ((3, 32, 32), Progress(done=3, total=3))
    """
    model = _check_model(model)
    image = check_image(image)
    h, w = (int(n) for n in image.shape[-2:])
    overlap = check_int(overlap, "overlap", 0)
    if overlap is None:
        overlap = receptive_radius(model)
    tile = check_int(tile, "tile", 1)
    if tile is None:
        tile = (
            max(AUTO_TILE, 2 * overlap + 4 * _MIN_CORE)
            if h * w > AUTO_TILE_THRESHOLD
            else max(h, w)
        )
    elif tile < max(h, w) and tile <= 2 * overlap:
        raise ValueError(
            f"tile ({tile}) must be larger than 2 * overlap ({2 * overlap}); use a larger tile "
            "or a smaller overlap"
        )
    batch = check_int(batch, "batch", 1, allow_none=False)
    mask = _check_mask(mask, (h, w), image)
    target = resolve_device(device)  # fail now on an unavailable device
    if not isinstance(amp, bool):
        raise TypeError(f"amp must be True or False, got {amp!r}")
    precision = check_precision(precision)
    if not amp:
        precision = "fp32"
    if precision != "auto":
        resolve_precision(precision, target)  # fail now on a precision the device lacks
    threads = check_threads(threads)
    ensemble = check_ensemble(ensemble)
    projection = _check_projection(bundle, values, project_iterations, image.shape, project_noise)
    zoom = _spacing_zoom(model, image, spacing, bundle, mask, match_spacing)
    options = {
        "tile": tile,
        "overlap": overlap,
        "batch": batch,
        "mask": mask,
        "precision": precision,
        "projection": projection,
        "zoom": zoom,
        "ensemble": ensemble,
    }
    if _is_dask(image):
        return _lazy_result(model, image, device=device, **options)
    return _with_threads(_run_numpy(model, image, device=target, **options), threads, target)


def _with_threads(
    work: GeneratorType[Progress, None, Any], threads: int | None, device: torch.device
) -> GeneratorType[Progress, None, Any]:
    """``work`` run with ``threads`` torch threads (None: automatic), restored after."""
    with thread_scope(threads, device) as scope:
        try:
            while True:
                try:
                    event = next(work)
                except StopIteration as stop:
                    return stop.value
                yield event
                scope.update()  # fewer threads when other jobs take the cores
        finally:
            work.close()  # stopped early: end the work now, not at garbage collection


def super_resolve(
    model: SRModel,
    image: Any,
    *,
    device: str | torch.device = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    batch: int = 4,
    mask: Any = None,
    progress: Callable[[int, int], Any] | None = None,
    amp: bool = True,
    bundle: FibreBundle | None = None,
    values: Any = None,
    project_iterations: int | None = None,
    project_noise: Any = "auto",
    spacing: float | str | None = None,
    match_spacing: bool = True,
    precision: str = "auto",
    threads: int | None = None,
    ensemble: int = DEFAULT_ENSEMBLE,
) -> Any:
    """Apply a super-resolution model to an image or a stack of images.

    Parameters
    ----------
    model : SRModel
        The trained model (e.g. from :func:`napari_cycsr.io.load_model`). It is not modified
        (nor its device or training mode): the run uses a private, optimised copy.
    image : array-like, shape (..., H, W)
        Greyscale image or stack with any leading axes (time, z, ...); numpy or dask,
        integer or float. See :func:`check_image` for what is refused.
    device : str or torch.device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    tile : int, optional
        Window size in input pixels. ``None``: whole frames, or 512 px windows when a frame
        has more than 1024 x 1024 pixels. Smaller tiles bound memory; the result is the same.
    overlap : int, optional
        Margin (input pixels) each window adds around the part it contributes. ``None``
        (default): the network's receptive radius (:func:`receptive_radius`), which makes
        tiled and whole-image results equal; smaller values are faster but may show seams.
    batch : int
        Windows (tiles or frames) sent to the network at once; fewer when the windows are
        large, so that one pass holds at most about one megapixel (4 x 512 x 512).
    mask : array-like of bool, shape (H, W), optional
        Field-of-view mask; output pixels outside it are set to 0 (the mask is upsampled by
        nearest neighbour for models with ``scale > 1``). Before the network, pixels outside
        it are replaced by their nearest pixel inside it, so the result inside does not
        depend on what lies outside and the edge of a circular bundle leaves no ring (the
        network was trained on patches inside the field of view). Without ``mask``, the
        ``bundle``'s ``fov_mask`` serves. ``"auto"``: the FOV is guessed from the image's
        zero surround (:func:`fov_from_image`; none when it has no zero surround).
    progress : callable, optional
        Called as ``progress(done, total)`` with the number of windows processed (numpy input
        only; first with ``done=0``).
    amp : bool
        ``False`` is ``precision="fp32"`` (kept for older scripts; prefer ``precision``).
    bundle : FibreBundle, optional
        The fibres of the input (its grid must be the frames' ``(H, W)``). When given, each
        output frame is projected onto the images consistent with the measured fibre
        values up to their noise (:func:`napari_cycsr.consistency.project_consistent`,
        Eq. 4 of the paper enforced on the output) and pixels outside the bundle's field of
        view are set to 0.
    values : array-like, shape (N,) or (..., N), optional
        The measured fibre values of each input frame (needs ``bundle``). ``None``: the
        values of the input frames at the fibre centres, ``bundle.sample(frame)``, which are
        exactly the measured values when the input is a TLI reconstruction (as every pCLE
        system displays); pass the raw core values for any other input.
    project_iterations : int, optional
        Back-projection steps of the projection (default: 5 for the noise-aware projection,
        2 for the exact fit; 0 only applies the FOV mask).
    project_noise : "auto", None or float
        Noise level of the fibre values for the projection (``noise`` of
        :func:`~napari_cycsr.consistency.project_consistent`): ``"auto"`` (default)
        estimates it per frame from the values, a number gives it (in the image's intensity
        units), ``None`` fits the values exactly.
    spacing : float, "auto" or None
        Fibre spacing of the input in pixels (median nearest-neighbour distance, as
        ``FibreBundle.spacing``). ``None`` (default): the ``bundle``'s when given;
        ``"auto"``: estimated from the first frame (:func:`estimate_tli_spacing`).
    match_spacing : bool
        When the model records the fibre spacing it was trained on
        (``metadata["fibre_spacing"]``, e.g. the pretrained models) and the input's spacing
        is known and differs by more than 5 %, the frames are resampled so that their
        spacing matches the model's, super-resolved, and resampled back (default True): one
        model then serves any bundle. False: never resample.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Arithmetic of the network. ``"auto"``: bfloat16 on a CPU with native bfloat16 (AMX /
        AVX-512 BF16) where a one-off timing shows it faster, bfloat16 (else float16) on
        CUDA, float32 elsewhere. ``"bf16"`` runs the convolutions under bfloat16 autocast
        (on a CPU without native bfloat16: emulated and slow, with a warning); ``"fp16"`` is
        for CUDA. The input skip and the output stay float32 (docs/performance.md).
    threads : int, optional
        CPU threads of torch for this call (restored after). ``None``: as many as the CPUs
        that other processes leave free, at most torch's current setting
        (:func:`napari_cycsr._device.choose_threads`). Ignored on a GPU and for dask input
        (dask's own threads run the chunks).
    ensemble : {1, 2, 4, 8}
        Geometric self-ensemble: the network runs on this many quarter turns / mirror
        images of each window, each output is turned back, and their mean is the result
        (default 4, the four quarter turns; 8 adds their mirror images; 1 is the network
        once). It costs that many network passes; it removes the part of the network's
        output that depends on the image's orientation (directional streaks, noise the
        network reshapes), which on the shipped default model gained 0.1-0.3 dB on every
        content class and noise level (docs/pretrained.md, "Self-ensemble").

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float32, shape ``(..., H * scale, W * scale)``; numpy for numpy input, a lazy dask
        array (one task per chunk of whole frames) for dask input. The input is not modified.

    Raises
    ------
    TypeError
        If ``model`` is not an :class:`SRModel` or the image dtype is not real numeric.
    ValueError
        For a bad image (see :func:`check_image`), mask, tile, overlap, batch, device,
        precision or threads.
    RuntimeError
        If CUDA runs out of memory even after halving the batch and the tile size.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_cycsr.models import SRModel
    >>> model = SRModel.new("tiny")
    >>> out = super_resolve(model, np.random.rand(2, 40, 30), device="cpu")
    >>> out.shape, out.dtype
    ((2, 40, 30), dtype('float32'))
    """
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable(done, total), got {type(progress).__name__}")
    gen = iter_super_resolve(
        model,
        image,
        device=device,
        tile=tile,
        overlap=overlap,
        batch=batch,
        mask=mask,
        amp=amp,
        bundle=bundle,
        values=values,
        project_iterations=project_iterations,
        project_noise=project_noise,
        spacing=spacing,
        match_spacing=match_spacing,
        precision=precision,
        threads=threads,
        ensemble=ensemble,
    )
    return _consume(gen, progress)


#: A model is refused on fibres more than this factor closer or farther apart than it saw.
SPACING_TOLERANCE = 1.5


def check_model_spacing(
    model: SRModel, spacing: float, *, tolerance: float = SPACING_TOLERANCE
) -> None:
    """Raise ``ValueError`` when ``model`` was trained on fibres much closer or farther apart.

    A model learns detail at the scale of the fibre pattern it saw; on an image whose fibres
    are more than ``tolerance`` times closer or farther apart (in pixels) it adds detail at
    the wrong scale. Models without a recorded spacing (``metadata["fibre_spacing"]``) pass.

    Parameters
    ----------
    model : SRModel
        The model; its ``metadata`` may hold ``"fibre_spacing"`` (px).
    spacing : float
        Median fibre spacing (px) of the image to super-resolve, e.g. ``bundle.spacing``.
    tolerance : float, optional
        Largest accepted ratio between the two spacings.
    """
    recorded = model.metadata.get("fibre_spacing", model.metadata.get("spacing"))
    if recorded is None or not spacing:
        return
    trained = positive_spacing(recorded)
    if trained is None:
        raise ValueError(
            f"the model's metadata fibre_spacing must be a positive number of pixels, got "
            f"{recorded!r}; the model file is damaged"
        )
    ratio = float(spacing) / trained
    if not 1 / tolerance <= ratio <= tolerance:
        raise ValueError(
            f"the model was trained on fibres {float(trained):.2f} px apart, but this image's "
            f"fibres are {float(spacing):.2f} px apart (x{ratio:.2f}); resample the image to "
            "the training pixel size or train a model for this scale"
        )
