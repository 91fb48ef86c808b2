"""Patch samplers for training: LR patches with their fibre cells, and target-domain patches.

:class:`LRPatchSampler` draws ``p x p`` patches of the low-resolution (TLI) images, only where
the patch lies inside the field of view, together with everything the cycle consistency
needs: the global Voronoi segment id of every pixel (cells cut by the patch border are
excluded), the measured fibre values V of those cells, and the patch of every cell.

:class:`TargetSampler` draws patches of the target domain ``T^HR`` of the paper (Section 3.6):
natural images (greyscale images shipped with scikit-image, standing in for Sun2012), any
user-given high-resolution images, the LR images downscaled x4 (``T_res``), or registered
high-resolution images paired with the LR images.

All randomness comes from the ``numpy.random.Generator`` passed as ``rng``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import ndimage

from ._validate import as_image, as_mask, nearest_fill_index
from .config import SPACING_MATCH, TARGET_KINDS

__all__ = [
    "NATURAL_IMAGES",
    "TARGET_KINDS",
    "LRPatchSampler",
    "NeighbourBatch",
    "PatchBatch",
    "Resampled",
    "TargetSampler",
    "as_frame_stacks",
    "check_poses",
    "dihedral",
    "natural_images",
    "resample_frame",
    "resample_to_spacing",
    "robust_normalisation",
    "spacing_zoom",
    "undo_dihedral",
    "zoomed_shape",
]


def dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Rotate the last two axes by ``k`` quarter turns, then optionally mirror them."""
    x = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return torch.flip(x, dims=(-1,)) if flip else x


def undo_dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Inverse of :func:`dihedral`."""
    x = torch.flip(x, dims=(-1,)) if flip else x
    return torch.rot90(x, -k, dims=(-2, -1)) if k else x


#: scikit-image images (bundled, offline) used as the natural-image target domain.
#: ``horse`` (a binary silhouette) is left out: it is not a natural grey image.
NATURAL_IMAGES: tuple[str, ...] = (
    "camera",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "clock",
    "moon",
    "text",
    "page",
    "coins",
)


#: Percentiles of :func:`robust_normalisation`.
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.5

_MAX_NORMALISATION_SAMPLES = 4_000_000


# ----------------------------------------------------------------------------- input checks
def _as_stack(image: Any, name: str) -> np.ndarray:
    """One image or stack as a float32 ``(T, H, W)`` array (a copy), under the package's
    image rule (:func:`napari_cycsr._validate.as_image`)."""
    if isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a numpy (or dask) array, got a torch.Tensor")
    arr = as_image(image, name=name)
    return arr.reshape(-1, *arr.shape[-2:]).astype(np.float32)


def as_frame_stacks(images: Any, name: str = "lr_images") -> list[np.ndarray]:
    """Normalise one image, one stack or a list of them to a list of ``(T, H, W)`` stacks.

    Parameters
    ----------
    images : array_like or sequence of array_like
        A 2-D image ``(H, W)``, a stack ``(..., H, W)`` (leading axes are flattened into
        frames), or a list/tuple of those.
    name : str
        Name used in error messages.

    Returns
    -------
    list of ndarray
        float32 ``(T, H, W)`` copies, one per input.

    Raises
    ------
    ValueError
        Empty list, RGB(A) input, NaN/inf, fewer than 2 dimensions.
    TypeError
        Non-numeric input.
    """
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError(f"{name} is an empty list; give at least one image")
        return [_as_stack(im, f"{name}[{i}]") for i, im in enumerate(images)]
    return [_as_stack(images, name)]


def _broadcast_bundles(bundles: Any, n: int) -> list[Any]:
    if isinstance(bundles, (list, tuple)):
        if len(bundles) == 1:
            return list(bundles) * n
        if len(bundles) != n:
            raise ValueError(
                f"got {len(bundles)} fibre bundles for {n} images; give one bundle per image "
                "or one shared bundle"
            )
        out = list(bundles)
    else:
        out = [bundles] * n
    for i, b in enumerate(out):
        if not all(hasattr(b, a) for a in ("labels", "shape", "n_fibres", "sample")):
            raise TypeError(f"bundles[{i}] must be a FibreBundle, got {type(b).__name__}")
    return out


def robust_normalisation(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None = None
) -> dict[str, float]:
    """Robust intensity range of images: the 1st and 99.5th percentiles over FOV pixels.

    Parameters
    ----------
    images : sequence of ndarray
        Images ``(H, W)`` or stacks ``(T, H, W)``.
    masks : sequence of ndarray or None, optional
        One ``(H, W)`` bool field-of-view mask per image (``None`` = all pixels).

    Returns
    -------
    dict
        ``{"low": p1, "high": p99.5}`` as floats; inputs map to about ``[0, 1]`` by
        ``(x - low) / (high - low)``.

    Raises
    ------
    ValueError
        If there is no FOV pixel, or the images are constant inside the FOV.

    Examples
    --------
    >>> norm = robust_normalisation([np.linspace(0, 10, 1001).reshape(7, 143)])
    >>> round(norm["low"], 2), round(norm["high"], 2)
    (0.1, 9.95)
    """
    if len(images) == 0:
        raise ValueError("robust_normalisation needs at least one image")
    if masks is None:
        masks = [None] * len(images)
    if len(masks) != len(images):
        raise ValueError(f"got {len(masks)} masks for {len(images)} images")
    total = sum(int(np.asarray(im).size) for im in images)
    step = max(1, total // _MAX_NORMALISATION_SAMPLES)
    parts = []
    for im, mask in zip(images, masks):
        arr = np.asarray(im, dtype=np.float32).reshape(-1, *np.shape(im)[-2:])
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != arr.shape[-2:]:
                raise ValueError(f"mask shape {mask.shape} != image shape {arr.shape[-2:]}")
            pix = arr[:, mask]
        else:
            pix = arr.reshape(arr.shape[0], -1)
        parts.append(pix.ravel()[::step])
    values = np.concatenate(parts)
    if values.size == 0:
        raise ValueError("no pixel inside the field of view to normalise by")
    low, high = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if not high > low:
        low, high = float(values.min()), float(values.max())
        if not high > low:
            raise ValueError(f"images are constant ({low:g}) inside the field of view")
    return {"low": float(low), "high": float(high)}


def _valid_positions(mask: np.ndarray, patch: int, fraction: float) -> np.ndarray:
    """Flat indices (in the ``(H-p+1, W-p+1)`` grid) of top-left corners of usable patches."""
    h, w = mask.shape
    if h < patch or w < patch:
        return np.zeros(0, dtype=np.int64)
    integral = np.zeros((h + 1, w + 1), dtype=np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1)
    window = (
        integral[patch:, patch:]
        - integral[:-patch, patch:]
        - integral[patch:, :-patch]
        + integral[:-patch, :-patch]
    )
    need = int(np.ceil(fraction * patch * patch - 1e-9))
    return np.flatnonzero(window >= need).astype(np.int64)


def _cell_boxes(labels: np.ndarray, n_fibres: int) -> np.ndarray:
    """``(N, 4)`` int64 bounding box ``(ymin, ymax, xmin, xmax)`` (inclusive) of every cell.

    Cells with no pixel get an empty box that no patch contains.
    """
    boxes = np.empty((n_fibres, 4), dtype=np.int64)
    boxes[:, 0] = boxes[:, 2] = np.iinfo(np.int64).max // 4
    boxes[:, 1] = boxes[:, 3] = -1
    for i, sl in enumerate(ndimage.find_objects(labels.astype(np.int64) + 1)):
        if sl is not None:
            boxes[i] = (sl[0].start, sl[0].stop - 1, sl[1].start, sl[1].stop - 1)
    return boxes


def _values_per_image(
    values: Any, stacks: list[np.ndarray], bundles: list[Any]
) -> list[np.ndarray]:
    """Measured fibre values as one float32 ``(T, N)`` array per image (validated)."""
    if values is None:
        return [np.asarray(b.sample(s), dtype=np.float32) for s, b in zip(stacks, bundles)]
    if not isinstance(values, (list, tuple)):
        values = [values]
    if len(values) != len(stacks):
        raise ValueError(f"got {len(values)} fibre value arrays for {len(stacks)} images")
    out = []
    for i, (v, stack, bundle) in enumerate(zip(values, stacks, bundles)):
        arr = np.asarray(v)
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise TypeError(f"values[{i}] must be a real numeric array, got dtype {arr.dtype}")
        n, t = int(bundle.n_fibres), len(stack)
        arr = arr.astype(np.float32).reshape(-1, arr.shape[-1]) if arr.ndim else arr
        if arr.ndim != 2 or arr.shape != (t, n):
            raise ValueError(
                f"values[{i}] must have shape (N,) or (T, N) = ({t}, {n}) for an image of "
                f"{t} frame(s) and a bundle of {n} fibres, got {np.shape(v)}"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"values[{i}] contains NaN or infinite values")
        out.append(arr)
    return out


# ----------------------------------------------------------------------------- LR patches
@dataclass
class PatchBatch:
    """A batch of LR patches with their fibre cells (what the cycle consistency needs).

    Attributes
    ----------
    lr : torch.Tensor
        ``(B, 1, p, p)`` float32 normalised LR patches.
    cell_index : torch.Tensor
        ``(B, p*s, p*s)`` int64 global segment id of every pixel of the (``s``-times finer)
        SR grid; ``-1`` outside the FOV and in cells cut by the patch border.
    values : torch.Tensor
        ``(n_cells,)`` float32 normalised measured fibre values V of the segments.
    segment_patch : torch.Tensor
        ``(n_cells,)`` int64 patch of every segment (sorted ascending).
    n_cells : int
        Number of segments in the batch.
    positions : numpy.ndarray
        ``(B, 4)`` int64 ``(image, frame, y0, x0)`` of every patch (LR grid).
    fibre : numpy.ndarray
        ``(n_cells,)`` int64 fibre index (within its bundle) of every segment.
    """

    lr: torch.Tensor
    cell_index: torch.Tensor
    values: torch.Tensor
    segment_patch: torch.Tensor
    n_cells: int
    positions: np.ndarray
    fibre: np.ndarray

    @property
    def batch_size(self) -> int:
        return int(self.lr.shape[0])

    def to(self, device: torch.device | str) -> PatchBatch:
        """The same batch with its tensors on ``device``."""
        return PatchBatch(
            lr=self.lr.to(device),
            cell_index=self.cell_index.to(device),
            values=self.values.to(device),
            segment_patch=self.segment_patch.to(device),
            n_cells=self.n_cells,
            positions=self.positions,
            fibre=self.fibre,
        )


@dataclass
class NeighbourBatch:
    """What the multi-frame cycle consistency needs for a batch of LR patches.

    For patch ``b`` of frame ``t``, a neighbouring frame ``t'`` of the same video looked at
    the same scene, moved. Its patch ``b'`` (placed to cover about the same part of the
    scene) has whole fibre cells with measured values; :attr:`grid` says where every
    pixel of ``b'`` lies in patch ``b``, so ``grid_sample(SR(b), grid)`` is the output for
    frame ``t`` moved into frame ``t'``, whose Voronoi means must give back frame ``t'``'s
    values.

    Attributes
    ----------
    grid : torch.Tensor
        ``(B, P, P, 2)`` float32 sampling positions for
        ``torch.nn.functional.grid_sample(..., align_corners=True)``: ``(x, y)`` in
        ``[-1, 1]`` over patch ``b``'s SR grid (``P = patch * scale``).
    cell_index : torch.Tensor
        ``(B, P, P)`` int64 segment id of every pixel of the neighbour patches; ``-1``
        outside the FOV, in cells cut by the patch border, in cells that reach outside
        patch ``b`` once moved, and in the whole patch when no neighbour was found.
    values : torch.Tensor
        ``(n_cells,)`` float32 normalised values the neighbour frames measured.
    segment_patch : torch.Tensor
        ``(n_cells,)`` int64 patch ``b`` of every segment.
    n_cells : int
        Number of segments.
    frames : numpy.ndarray
        ``(B,)`` int64 neighbour frame of every patch, ``-1`` where none was found.
    """

    grid: torch.Tensor
    cell_index: torch.Tensor
    values: torch.Tensor
    segment_patch: torch.Tensor
    n_cells: int
    frames: np.ndarray

    def to(self, device: torch.device | str) -> NeighbourBatch:
        """The same batch with its tensors on ``device``."""
        return NeighbourBatch(
            grid=self.grid.to(device),
            cell_index=self.cell_index.to(device),
            values=self.values.to(device),
            segment_patch=self.segment_patch.to(device),
            n_cells=self.n_cells,
            frames=self.frames,
        )


def _rotation(angle: float) -> np.ndarray:
    # the video package's pose convention (video/_common.py): R(a) = [[cos, sin], [-sin, cos]]
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, s], [-s, c]])


def _between_frames(x: np.ndarray, src: tuple, dst: tuple, centre: np.ndarray) -> np.ndarray:
    """Positions ``x`` (..., 2) of frame ``src`` carried to frame ``dst`` (same scene point).

    A pose ``(shift, angle)`` maps a reference-frame point ``q`` to
    ``R(angle) (q - c) + c + shift``; this is ``T_dst(T_src^-1(x))``.
    """
    (s_src, a_src), (s_dst, a_dst) = src, dst
    scene = (x - centre - s_src) @ _rotation(a_src) + centre  # R^T (x - c - s) + c
    return (scene - centre) @ _rotation(a_dst).T + centre + s_dst


def check_poses(poses: Any, stacks: list[np.ndarray]) -> list[tuple | None]:
    """Per image ``None`` or ``(shifts (T, 2), angles (T,), good (T,))``, validated.

    An image's pose may be a :class:`~napari_cycsr.video.Registration` (anything with
    ``shifts``, ``angles`` and ``good``) or a ``(T, 2)`` array of ``(dy, dx)`` shifts.
    """
    if poses is None:
        return [None] * len(stacks)

    def per_image(item: Any) -> bool:  # one image's pose, not one frame's (dy, dx)
        return item is None or hasattr(item, "shifts") or np.ndim(item) == 2

    if not isinstance(poses, (list, tuple)) or not all(per_image(p) for p in poses):
        poses = [poses]
    if len(poses) != len(stacks):
        raise ValueError(f"got {len(poses)} registrations for {len(stacks)} images")
    out: list[tuple | None] = []
    for i, (pose, stack) in enumerate(zip(poses, stacks)):
        if pose is None:
            out.append(None)
            continue
        t = len(stack)
        if hasattr(pose, "shifts"):
            shifts = np.asarray(pose.shifts, np.float64)
            angles = np.asarray(getattr(pose, "angles", np.zeros(t)), np.float64)
            good = np.asarray(getattr(pose, "good", np.ones(t, bool)), bool)
        else:
            shifts = np.asarray(pose, np.float64)
            angles, good = np.zeros(t), np.ones(t, bool)
        if shifts.shape != (t, 2) or angles.shape != (t,) or good.shape != (t,):
            raise ValueError(
                f"registration {i} must give a (dy, dx) shift per frame, shape ({t}, 2) for "
                f"an image of {t} frame(s), got shape {shifts.shape}"
            )
        if not (np.isfinite(shifts).all() and np.isfinite(angles).all()):
            raise ValueError(f"registration {i} contains NaN or infinite shifts or angles")
        out.append((shifts, angles, good))
    return out


def resample_frame(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``frame`` resized to ``shape``: bilinear with anti-aliasing when shrinking, else cubic."""
    from skimage.transform import resize

    shrink = shape[0] < frame.shape[0] or shape[1] < frame.shape[1]
    out = resize(
        frame.astype(np.float32, copy=False),
        shape,
        order=1 if shrink else 3,
        anti_aliasing=shrink,
        mode="symmetric",
        preserve_range=True,
    )
    return out.astype(np.float32, copy=False)


def spacing_zoom(target: float, own: float, tolerance: float = SPACING_MATCH) -> float:
    """Resizing factor that brings fibres ``own`` px apart to ``target`` px apart; exactly
    1.0 when that is within ``tolerance`` (a fraction) of 1."""
    zoom = float(target) / float(own)
    return 1.0 if abs(zoom - 1.0) <= tolerance else zoom


def zoomed_shape(shape: Sequence[int], zoom: float) -> tuple[int, int]:
    """``(H, W)`` resized by ``zoom`` (rounded, at least 1 px): the grid a resampled frame
    lies on, in training and at inference alike."""
    return max(1, round(shape[0] * zoom)), max(1, round(shape[1] * zoom))


class _Pose(NamedTuple):
    """One image's registration in :func:`check_poses`' terms."""

    shifts: np.ndarray
    angles: np.ndarray
    good: np.ndarray


def _resample_stack(
    stack: np.ndarray, mask: np.ndarray, scale: int, shape: tuple[int, int]
) -> np.ndarray:
    """A ``scale``-times-finer stack over ``mask`` resized to ``scale`` times ``shape``."""
    fine = np.asarray(mask, dtype=bool)
    if scale > 1:
        fine = np.repeat(np.repeat(fine, scale, axis=0), scale, axis=1)
    fill = nearest_fill_index(fine)
    size = (shape[0] * scale, shape[1] * scale)
    out = np.empty((len(stack), *size), dtype=np.float32)
    for t, frame in enumerate(stack):
        out[t] = resample_frame(frame[fill] if fill is not None else frame, size)
    return out


def _check_resampled_size(
    stacks: list[np.ndarray],
    bundles: list[Any],
    spacing: float,
    tolerance: float,
    targets: list[np.ndarray] | None,
    scale: int,
) -> None:
    """Refuse a resampling that would hold more pixels than the reader's cap allows."""
    from ._imageio import _max_pixels

    total = 0
    for stack, bundle in zip(stacks, bundles):
        zoom = spacing_zoom(spacing, bundle.spacing, tolerance)
        if zoom == 1.0:
            continue
        rh, rw = zoomed_shape(stack.shape[1:], zoom)
        total += len(stack) * rh * rw * (1 + (scale * scale if targets is not None else 0))
    cap, how = _max_pixels(None)
    if total > cap:
        raise ValueError(
            f"resampling the frames to a fibre spacing of {spacing:.2f} px would hold "
            f"{total:,} pixels ({total * 4 / 2**30:.1f} GiB as float32), more than the "
            f"{cap:,} allowed: train on fewer frames, {how}, or train at the frames' own "
            "spacing (match_spacing=False)"
        )


def _check_shapes(stacks: list[np.ndarray], bundles: list[Any]) -> None:
    for i, (stack, bundle) in enumerate(zip(stacks, bundles)):
        if tuple(stack.shape[1:]) != tuple(bundle.shape):
            raise ValueError(
                f"lr_images[{i}] has frames of shape {stack.shape[1:]} but its fibre "
                f"bundle is for images of shape {tuple(bundle.shape)}"
            )


@dataclass
class Resampled:
    """Training data brought to another fibre spacing (:func:`resample_to_spacing`)."""

    #: float32 ``(T, H', W')`` stacks (TLI-like: zero outside the resized field of view)
    images: list[np.ndarray]
    #: one bundle per image, on the resized grids (images that shared one still share one)
    bundles: list[Any]
    #: the measured fibre values, ``(T, N)`` per image (unchanged: a fibre measures the same)
    values: list[np.ndarray]
    #: registrations with shifts in the resized pixels (``None`` where there was none)
    poses: list[Any]
    #: the resizing factor of every image (1.0: left as it was)
    zooms: list[float]
    #: paired targets resized with their images (``scale`` times their grid), or None
    paired: list[np.ndarray] | None = None


def resample_to_spacing(
    lr_images: Any,
    bundles: Any,
    spacing: float,
    *,
    values: Any = None,
    poses: Any = None,
    paired: Any = None,
    scale: int = 1,
    tolerance: float = SPACING_MATCH,
) -> Resampled:
    """Resize training frames so their fibres lie ``spacing`` pixels apart.

    What :func:`~napari_cycsr.inference.super_resolve` does to a frame before a model that
    learned at another fibre spacing, done to training data: every image whose bundle's
    spacing differs from ``spacing`` by more than ``tolerance`` (a fraction) is resized by
    ``spacing / bundle.spacing`` (outside pixels first replaced by their nearest field-of-view
    pixel, so no dark edge is blurred in), its bundle moves with the grid
    (:meth:`~napari_cycsr.fibres.FibreBundle.resized`), its registration's shifts are scaled
    and its fibre values are kept: a fibre measured what it measured, wherever the grid
    puts it. Values not given are sampled from the original frames (exact for TLI).

    Parameters
    ----------
    lr_images, bundles, values, poses
        As for :class:`LRPatchSampler` (``poses`` is its registration).
    paired : array_like or list, optional
        High-resolution targets registered to the images (``target="paired"``, e.g. the fused
        video of :func:`~napari_cycsr.workflows.train_video`), ``scale`` times their grid:
        resized with them, so that a target patch still lies over its LR patch.
    scale : int
        The network's scale (the paired targets' grid over the images').
    spacing : float
        Target median nearest-neighbour fibre spacing, in pixels.
    tolerance : float
        Images within this fraction of ``spacing`` are left as they are (default
        :data:`~napari_cycsr.config.SPACING_MATCH`, as inference).

    Returns
    -------
    Resampled

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle
    >>> sim = simulate_pcle(data.camera()[:128, :128] / 255.0, spacing=4.0, seed=0)
    >>> out = resample_to_spacing(sim.lr, sim.bundle, sim.bundle.spacing / 2)
    >>> out.images[0].shape, out.zooms, round(out.bundles[0].spacing / sim.bundle.spacing, 2)
    ((1, 64, 64), [0.5], 0.5)
    """
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float, np.number)):
        raise TypeError(f"spacing must be a number of pixels, got {spacing!r}")
    if not (np.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be a positive number of pixels, got {spacing!r}")
    stacks = as_frame_stacks(lr_images, "lr_images")
    per_image = _broadcast_bundles(bundles, len(stacks))
    _check_shapes(stacks, per_image)
    measured = _values_per_image(values, stacks, per_image)
    checked = check_poses(poses, stacks)
    targets = None if paired is None else as_frame_stacks(paired, "target_images")
    if targets is not None:
        if len(targets) != len(stacks):
            raise ValueError(f"got {len(targets)} paired targets for {len(stacks)} images")
        for i, (target, stack) in enumerate(zip(targets, stacks)):
            want = (stack.shape[1] * scale, stack.shape[2] * scale)
            if tuple(target.shape[1:]) != want:
                raise ValueError(
                    f"paired target {i} has frames of shape {target.shape[1:]}; it must be its "
                    f"image's {stack.shape[1:]} x scale {scale} = {want}"
                )
    _check_resampled_size(stacks, per_image, float(spacing), tolerance, targets, scale)
    resized: dict[tuple[int, tuple[int, int]], Any] = {}  # shared bundles stay shared
    out = Resampled([], [], measured, [], [], None if targets is None else [])
    for i, (stack, bundle, pose) in enumerate(zip(stacks, per_image, checked)):
        zoom = spacing_zoom(spacing, bundle.spacing, tolerance)
        if zoom == 1.0:
            if out.paired is not None:
                out.paired.append(targets[i])
            out.images.append(stack)
            out.bundles.append(bundle)
            out.poses.append(None if pose is None else _Pose(*pose))
            out.zooms.append(1.0)
            continue
        h, w = stack.shape[1:]
        shape = zoomed_shape((h, w), zoom)
        key = (id(bundle), shape)
        if key not in resized:
            resized[key] = bundle.resized(shape)
        new = resized[key]
        frames = _resample_stack(stack, bundle.fov_mask, 1, shape)
        frames[:, ~np.asarray(new.fov_mask, dtype=bool)] = 0.0
        out.images.append(frames)
        out.bundles.append(new)
        if out.paired is not None:
            out.paired.append(_resample_stack(targets[i], bundle.fov_mask, scale, shape))
        if pose is None:
            out.poses.append(None)
        else:
            factor = np.array([shape[0] / h, shape[1] / w])
            out.poses.append(_Pose(pose[0] * factor, pose[1], pose[2]))
        out.zooms.append(zoom)
    return out


class LRPatchSampler:
    """Random LR patches inside the field of view, with the fibre cells each one contains.

    Parameters
    ----------
    lr_images : array_like or list of array_like
        LR (TLI) images ``(H, W)`` or stacks ``(T, H, W)``; every frame is a sample.
    bundles : FibreBundle or list of FibreBundle
        One bundle per image, or one shared by all; its ``shape`` must equal the images'.
    patch : int
        Patch side ``p`` on the LR grid (default 64, as the paper).
    scale : int
        Scale of the SR network (1, 2 or 4); cell indices are given on the ``s``-times finer
        grid, each LR pixel's label repeated ``s x s`` times.
    values : array_like or list of array_like, optional
        Raw measured fibre values per image, ``(N,)`` for a 2-D image or ``(T, N)`` for a
        stack. When omitted, ``V = bundle.sample(frame)`` (exact for a TLI image).
    normalisation : dict, optional
        ``{"low", "high"}`` applied to both images and values; default
        :func:`robust_normalisation` of the images over their FOVs.
    fov_fraction : float
        A patch is drawn only where at least this fraction of its pixels lies in the FOV
        (default 1.0: wholly inside, as the paper's patches of the circular pCLE field).
    rng : numpy.random.Generator, optional
        Source of randomness (default ``np.random.default_rng(0)``).
    poses : list, optional
        Registration of every image's frames, for :meth:`neighbours` (the multi-frame cycle
        consistency): per image ``None``, a :class:`~napari_cycsr.video.Registration` or a
        ``(T, 2)`` array of ``(dy, dx)`` shifts in its convention (a scene point at ``q`` in
        the reference frame is at ``q + shift`` in frame ``t``). Frames that are not
        ``good`` are never used as neighbours.

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle
    >>> sim = simulate_pcle(data.camera()[:128, 192:320] / 255.0, seed=0)
    >>> sampler = LRPatchSampler(sim.lr, sim.bundle, patch=32, values=sim.values)
    >>> batch = sampler.sample(4)
    >>> batch.lr.shape, batch.cell_index.shape
    (torch.Size([4, 1, 32, 32]), torch.Size([4, 32, 32]))
    """

    def __init__(
        self,
        lr_images: Any,
        bundles: Any,
        *,
        patch: int = 64,
        scale: int = 1,
        values: Any = None,
        normalisation: dict[str, float] | None = None,
        fov_fraction: float = 1.0,
        rng: np.random.Generator | None = None,
        poses: Any = None,
    ) -> None:
        if not isinstance(patch, (int, np.integer)) or patch < 8:
            raise ValueError(f"patch must be an integer >= 8, got {patch!r}")
        if scale not in (1, 2, 4):
            raise ValueError(f"scale must be 1, 2 or 4, got {scale!r}")
        if not 0.0 < float(fov_fraction) <= 1.0:
            raise ValueError(f"fov_fraction must be in (0, 1], got {fov_fraction!r}")
        self.patch = int(patch)
        self.scale = int(scale)
        self.fov_fraction = float(fov_fraction)
        self.rng = rng if rng is not None else np.random.default_rng(0)

        stacks = as_frame_stacks(lr_images, "lr_images")
        self.bundles = _broadcast_bundles(bundles, len(stacks))
        _check_shapes(stacks, self.bundles)
        self.values = _values_per_image(values, stacks, self.bundles)
        self.poses = check_poses(poses, stacks)

        masks = [np.asarray(b.fov_mask, dtype=bool) for b in self.bundles]
        if normalisation is None:
            normalisation = robust_normalisation(stacks, masks)
        low, high = float(normalisation["low"]), float(normalisation["high"])
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise ValueError(f"normalisation needs finite low < high, got {normalisation!r}")
        self.normalisation = {"low": low, "high": high}
        span = high - low
        for stack in stacks:  # our own float32 copies: normalise in place (half the memory)
            stack -= low
            stack /= span
        self.images = stacks
        self.values = [((v - low) / span).astype(np.float32) for v in self.values]

        # per-bundle geometry (shared bundles are computed once)
        geometry: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._labels: list[np.ndarray] = []
        self._boxes: list[np.ndarray] = []
        self._positions: list[np.ndarray] = []
        for bundle in self.bundles:
            key = id(bundle)
            if key not in geometry:
                labels = np.asarray(bundle.labels, dtype=np.int64)
                geometry[key] = (labels, _cell_boxes(labels, int(bundle.n_fibres)))
            labels, boxes = geometry[key]
            self._labels.append(labels)
            self._boxes.append(boxes)
            self._positions.append(_valid_positions(labels >= 0, self.patch, self.fov_fraction))
        counts = np.array(
            [len(p) * len(im) for p, im in zip(self._positions, self.images)], dtype=np.float64
        )
        if counts.sum() == 0:
            shapes = [tuple(im.shape[1:]) for im in self.images]
            raise ValueError(
                f"no {self.patch}x{self.patch} patch lies inside the field of view "
                f"(fov_fraction={self.fov_fraction}) of any image {shapes}; use a smaller "
                "patch or a lower fov_fraction"
            )
        self._image_weights = counts / counts.sum()
        self._n_max = max(int(b.n_fibres) for b in self.bundles)
        self._usable: list[np.ndarray | None] = [None] * len(stacks)  # for neighbours()

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_frames(self) -> int:
        """Total number of frames over all images."""
        return int(sum(len(im) for im in self.images))

    def n_positions(self, image: int = 0) -> int:
        """Number of usable patch positions in image ``image``."""
        return int(len(self._positions[image]))

    def draw_positions(self, batch_size: int) -> np.ndarray:
        """Random ``(image, frame, y0, x0)`` rows for ``batch_size`` patches."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = self.rng
        images = rng.choice(self.n_images, size=batch_size, p=self._image_weights)
        out = np.empty((batch_size, 4), dtype=np.int64)
        for b, i in enumerate(images):
            frame = rng.integers(len(self.images[i]))
            flat = self._positions[i][rng.integers(len(self._positions[i]))]
            width = self.images[i].shape[2] - self.patch + 1
            out[b] = (i, frame, flat // width, flat % width)
        return out

    def sample(self, batch_size: int) -> PatchBatch:
        """Draw a random batch of patches.

        Parameters
        ----------
        batch_size : int
            Number of patches ``B``.

        Returns
        -------
        PatchBatch
        """
        return self.batch_at(self.draw_positions(batch_size))

    def batch_at(self, positions: np.ndarray) -> PatchBatch:
        """The batch of patches at given ``(image, frame, y0, x0)`` rows (no randomness).

        The patches of each image are gathered at once (one fancy index per image, no loop
        over patches), so drawing a batch costs about a millisecond whatever its size.
        """
        positions = np.asarray(positions, dtype=np.int64).reshape(-1, 4)
        p, s, n_max = self.patch, self.scale, self._n_max
        bsz = positions.shape[0]
        lr = np.empty((bsz, 1, p, p), dtype=np.float32)
        keys = np.full((bsz, p, p), -1, dtype=np.int64)
        offsets = np.arange(p)
        for i in np.unique(positions[:, 0]):
            rows = np.flatnonzero(positions[:, 0] == i)
            t, y0, x0 = (positions[rows, k] for k in (1, 2, 3))
            ys = (y0[:, None] + offsets)[:, :, None]  # (n, p, 1)
            xs = (x0[:, None] + offsets)[:, None, :]  # (n, 1, p)
            lr[rows, 0] = self.images[i][t[:, None, None], ys, xs]
            lab = self._labels[i][ys, xs]  # (n, p, p)
            box = self._boxes[i][np.maximum(lab, 0)]  # (n, p, p, 4)
            y0, x0 = y0[:, None, None], x0[:, None, None]
            whole = (
                (lab >= 0)
                & (box[..., 0] >= y0)
                & (box[..., 1] < y0 + p)
                & (box[..., 2] >= x0)
                & (box[..., 3] < x0 + p)
            )
            keys[rows] = np.where(whole, rows[:, None, None] * n_max + lab, -1)
        counted = keys >= 0
        unique, inverse = np.unique(keys[counted], return_inverse=True)
        cell_index = np.full((bsz, p, p), -1, dtype=np.int64)
        cell_index[counted] = inverse
        segment_patch = unique // n_max
        fibre = unique % n_max
        values = np.empty(len(unique), dtype=np.float32)
        image_of = positions[segment_patch, 0]
        for i in np.unique(image_of):
            sel = image_of == i
            values[sel] = self.values[i][positions[segment_patch[sel], 1], fibre[sel]]
        if s > 1:
            cell_index = np.repeat(np.repeat(cell_index, s, axis=1), s, axis=2)
        return PatchBatch(
            lr=torch.from_numpy(lr),
            cell_index=torch.from_numpy(cell_index),
            values=torch.from_numpy(values),
            segment_patch=torch.from_numpy(segment_patch),
            n_cells=int(len(unique)),
            positions=positions.copy(),
            fibre=fibre,
        )

    @property
    def has_video(self) -> bool:
        """True when some image has a registration with two or more good frames."""
        return any(p is not None and int(p[2].sum()) >= 2 for p in self.poses)

    def _usable_grid(self, image: int) -> np.ndarray:
        """``(H-p+1, W-p+1)`` bool: where a patch of ``image`` may start."""
        grid = self._usable[image]
        if grid is None:
            h, w = self.images[image].shape[1:]
            grid = np.zeros((h - self.patch + 1) * (w - self.patch + 1), dtype=bool)
            grid[self._positions[image]] = True
            grid = grid.reshape(h - self.patch + 1, w - self.patch + 1)
            self._usable[image] = grid
        return grid

    def neighbours(
        self, positions: np.ndarray, max_distance: int = 2, *, tries: int = 4
    ) -> NeighbourBatch:
        """Neighbour-frame patches of a batch, for the multi-frame cycle consistency.

        For every ``(image, frame t, y0, x0)`` row, a good frame ``t'`` with
        ``1 <= |t' - t| <= max_distance`` is drawn (up to ``tries`` of them, until one
        gives a usable patch); its patch is placed where the registration says the centre
        of patch ``t`` went, so the two cover about the same scene, and every pixel of it
        is mapped back into patch ``t`` (:attr:`NeighbourBatch.grid`). Cells that would
        need pixels from outside patch ``t`` are left out. Rows of images with no
        registration get no neighbour.

        Parameters
        ----------
        positions : numpy.ndarray
            ``(B, 4)`` rows of the batch (:attr:`PatchBatch.positions`).
        max_distance : int
            Largest frame distance ``|t' - t|``.
        tries : int
            Neighbour frames tried per patch.

        Returns
        -------
        NeighbourBatch
        """
        positions = np.asarray(positions, dtype=np.int64).reshape(-1, 4)
        if isinstance(max_distance, bool) or int(max_distance) < 1:
            raise ValueError(f"max_distance must be an integer >= 1, got {max_distance!r}")
        p, s = self.patch, self.scale
        big = p * s
        bsz = len(positions)
        fine = (np.arange(big) + 0.5) / s - 0.5  # LR coordinates of the SR pixel centres
        local = np.stack(np.meshgrid(fine, fine, indexing="ij"), axis=-1).reshape(-1, 2)
        coords = np.zeros((bsz, big * big, 2), dtype=np.float64)
        chosen = np.full(bsz, -1, dtype=np.int64)
        rows = np.full((bsz, 4), -1, dtype=np.int64)
        for b, (i, t, y0, x0) in enumerate(positions):
            pose = self.poses[i]
            if pose is None:
                continue
            shifts, angles, good = pose
            h, w = self.images[i].shape[1:]
            centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
            lo, hi = max(0, t - max_distance), min(len(shifts), t + max_distance + 1)
            candidates = [u for u in range(lo, hi) if u != t and good[u]]
            if not candidates:
                continue
            order = self.rng.permutation(len(candidates))[:tries]
            usable = self._usable_grid(i)
            origin = np.array([y0, x0], dtype=np.float64)
            for u in (candidates[k] for k in order):
                pose_t, pose_u = (shifts[t], angles[t]), (shifts[u], angles[u])
                middle = _between_frames(origin + (p - 1) / 2.0, pose_t, pose_u, centre)
                oy, ox = np.round(middle - (p - 1) / 2.0).astype(np.int64)
                if not (0 <= oy < usable.shape[0] and 0 <= ox < usable.shape[1]):
                    continue
                if not usable[oy, ox]:
                    continue
                corner = np.array([oy, ox], dtype=np.float64)
                source = _between_frames(local + corner, pose_u, pose_t, centre) - origin
                coords[b] = (source + 0.5) * s - 0.5  # on patch t's SR grid
                chosen[b] = u
                rows[b] = (i, u, oy, ox)
                break
        found = np.flatnonzero(chosen >= 0)
        cell_index = torch.full((bsz, big, big), -1, dtype=torch.int64)
        values = torch.zeros(0, dtype=torch.float32)
        segment_patch = torch.zeros(0, dtype=torch.int64)
        n_cells = 0
        if len(found):
            sub = self.batch_at(rows[found])
        if len(found) and sub.n_cells:
            index = sub.cell_index.numpy()  # (n, P, P) ids over the sub-batch
            outside = (coords[found] < 0) | (coords[found] > big - 1)
            outside = outside.any(axis=-1).reshape(len(found), big, big)
            keep = np.ones(sub.n_cells, dtype=bool)
            keep[np.unique(index[outside & (index >= 0)])] = False
            new_id = np.cumsum(keep) - 1
            remapped = np.where(index >= 0, np.where(keep[index], new_id[index], -1), -1)
            cell_index[torch.from_numpy(found)] = torch.from_numpy(remapped)
            values = sub.values[torch.from_numpy(keep)]
            segment_patch = torch.from_numpy(found[sub.segment_patch.numpy()[keep]])
            n_cells = int(keep.sum())
        grid = 2.0 * coords / max(big - 1, 1) - 1.0
        grid = grid[..., ::-1].reshape(bsz, big, big, 2)  # grid_sample wants (x, y)
        return NeighbourBatch(
            grid=torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32)),
            cell_index=cell_index,
            values=values,
            segment_patch=segment_patch,
            n_cells=n_cells,
            frames=chosen,
        )


# ----------------------------------------------------------------------------- targets
@functools.lru_cache(maxsize=4)
def _natural_images_cached(names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    from skimage import data as skdata
    from skimage.color import rgb2gray
    from skimage.util import img_as_float32

    out = []
    for name in names:
        loader = getattr(skdata, name, None)
        if loader is None:
            raise ValueError(f"skimage.data has no image {name!r}")
        image = loader()
        if image.ndim == 3:
            image = rgb2gray(image[..., :3])
        image = np.asarray(img_as_float32(image), dtype=np.float32)
        image.setflags(write=False)
        out.append(image)
    return tuple(out)


def natural_images(names: Sequence[str] = NATURAL_IMAGES) -> list[np.ndarray]:
    """The scikit-image sample images used as the natural-image target domain.

    Parameters
    ----------
    names : sequence of str
        Names of functions of :mod:`skimage.data` (bundled images, no download).

    Returns
    -------
    list of ndarray
        Grey float32 images in ``[0, 1]`` (colour images converted with ``rgb2gray``);
        loaded once per process and shared, so they are read-only.
    """
    return list(_natural_images_cached(tuple(names)))


def _downscale_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """A pixel of the downscaled grid is in the FOV when its whole block was."""
    h, w = (mask.shape[0] // factor) * factor, (mask.shape[1] // factor) * factor
    blocks = mask[:h, :w].reshape(h // factor, factor, w // factor, factor)
    return blocks.all(axis=(1, 3))


class TargetSampler:
    """Random patches of the target (high-resolution) domain ``T^HR``.

    Parameters
    ----------
    kind : {"natural", "images", "downscaled", "paired"}
        ``"natural"``: greyscale scikit-image sample images (:data:`NATURAL_IMAGES`);
        ``"images"``: the user's high-resolution ``images``; ``"downscaled"``: the LR images
        downscaled x4 with anti-aliasing (the paper's ``T_res``), patches drawn inside the
        downscaled FOV; ``"paired"``: high-resolution ``images`` registered to the LR images
        (same list structure, ``scale`` times their size), patches taken at the positions of
        the LR batch (pass ``positions`` to :meth:`sample`).
    images : array_like or list of array_like, optional
        High-resolution images for ``"images"`` and ``"paired"``.
    lr_images : array_like or list of array_like, optional
        LR images for ``"downscaled"``.
    masks : list of ndarray, optional
        FOV masks of ``lr_images`` (``"downscaled"``), or of ``images`` (``"images"``).
    patch : int
        Side of the target patches (the SR output size, ``p * scale``).
    scale : int
        Only for ``"paired"``: HR images are ``scale`` times the LR grid.
    augment : bool
        Random flips and 90-degree rotations of every patch (not for ``"paired"``).
    normalisation : dict, optional
        Only for ``"paired"``: the LR ``{"low", "high"}``, applied to the HR images so that
        they share the LR's intensity units. Other kinds are normalised per image to
        ``[0, 1]`` by their own 1st and 99.5th percentiles.
    fov_fraction : float
        Minimum fraction of a patch inside the FOV for ``"downscaled"`` / ``"images"``.
    rng : numpy.random.Generator, optional
        Source of randomness.

    Examples
    --------
    >>> sampler = TargetSampler("natural", patch=32, rng=np.random.default_rng(0))
    >>> sampler.sample(2).shape
    torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        kind: str = "natural",
        *,
        images: Any = None,
        lr_images: Any = None,
        masks: Sequence[np.ndarray | None] | None = None,
        patch: int = 64,
        scale: int = 1,
        augment: bool = True,
        normalisation: dict[str, float] | None = None,
        fov_fraction: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        if kind not in TARGET_KINDS:
            raise ValueError(f"unknown target kind {kind!r}; expected one of {TARGET_KINDS}")
        if not isinstance(patch, (int, np.integer)) or patch < 8:
            raise ValueError(f"patch must be an integer >= 8, got {patch!r}")
        self.kind = kind
        self.patch = int(patch)
        self.scale = int(scale)
        self.augment = bool(augment) and kind != "paired"
        self.rng = rng if rng is not None else np.random.default_rng(0)

        if kind == "natural":
            stacks = [im[None] for im in natural_images()]
            masks = [None] * len(stacks)
        elif kind == "images":
            if images is None:
                raise ValueError("target 'images' needs images=[HR image, ...]")
            stacks = as_frame_stacks(images, "target_images")
            masks = self._check_masks(masks, stacks)
        elif kind == "downscaled":
            if lr_images is None:
                raise ValueError("target 'downscaled' needs lr_images")
            from skimage.transform import rescale

            lr_stacks = as_frame_stacks(lr_images, "lr_images")
            lr_masks = self._check_masks(masks, lr_stacks)
            stacks, masks = [], []
            for stack, mask in zip(lr_stacks, lr_masks):
                small = np.stack(
                    [rescale(f, 0.25, anti_aliasing=True, preserve_range=True) for f in stack]
                ).astype(np.float32)
                if mask is None:
                    mask = np.ones(stack.shape[1:], dtype=bool)
                small_mask = _downscale_mask(mask, 4)
                hh = min(small.shape[1], small_mask.shape[0])
                ww = min(small.shape[2], small_mask.shape[1])
                stacks.append(small[:, :hh, :ww])
                masks.append(small_mask[:hh, :ww])
        else:  # paired
            if images is None:
                raise ValueError("target 'paired' needs images registered to the LR images")
            if normalisation is None:
                raise ValueError("target 'paired' needs the LR normalisation")
            stacks = as_frame_stacks(images, "target_images")
            masks = [None] * len(stacks)

        if kind == "paired":
            low, high = float(normalisation["low"]), float(normalisation["high"])
            self.images = [(s - low) / (high - low) for s in stacks]
            self._positions = []
            self._weights = np.zeros(0)
            return
        self.images = []
        for s, m in zip(stacks, masks):
            norm = robust_normalisation([s], [m])
            self.images.append((s - norm["low"]) / (norm["high"] - norm["low"]))
        self._positions = [
            _valid_positions(
                np.ones(s.shape[1:], dtype=bool) if m is None else m, self.patch, fov_fraction
            )
            for s, m in zip(self.images, masks)
        ]
        counts = np.array(
            [len(p) * len(s) for p, s in zip(self._positions, self.images)], dtype=np.float64
        )
        if counts.sum() == 0:
            shapes = [tuple(s.shape[1:]) for s in self.images]
            raise ValueError(
                f"target {kind!r}: no {self.patch}x{self.patch} patch fits inside the images "
                f"{shapes}" + (" (downscaled x4)" if kind == "downscaled" else "")
            )
        self._weights = counts / counts.sum()

    @staticmethod
    def _check_masks(masks: Any, stacks: list[np.ndarray]) -> list[np.ndarray | None]:
        if masks is None:
            return [None] * len(stacks)
        if len(masks) != len(stacks):
            raise ValueError(f"got {len(masks)} masks for {len(stacks)} images")
        return [
            as_mask(m, s.shape[1:], name=f"masks[{i}]", allow_empty=True)
            for i, (m, s) in enumerate(zip(masks, stacks))
        ]

    def sample(self, batch_size: int, positions: np.ndarray | None = None) -> torch.Tensor:
        """Draw ``batch_size`` target patches.

        Parameters
        ----------
        batch_size : int
            Number of patches.
        positions : ndarray, optional
            ``(B, 4)`` ``(image, frame, y0, x0)`` LR positions (from
            :attr:`PatchBatch.positions`); required for ``"paired"``, ignored otherwise.

        Returns
        -------
        torch.Tensor
            ``(B, 1, patch, patch)`` float32.
        """
        p = self.patch
        out = np.empty((batch_size, 1, p, p), dtype=np.float32)
        if self.kind == "paired":
            if positions is None or len(positions) != batch_size:
                raise ValueError("target 'paired' needs the LR batch positions")
            s = self.scale
            for b, (i, t, y0, x0) in enumerate(np.asarray(positions, dtype=np.int64)):
                img = self.images[i]
                frame = img[t if len(img) > 1 else 0]
                crop = frame[y0 * s : y0 * s + p, x0 * s : x0 * s + p]
                if crop.shape != (p, p):
                    raise ValueError(
                        f"paired image {i} of shape {frame.shape} does not cover the LR patch "
                        f"at ({y0}, {x0}) x{s}; paired images must be the LR size x scale"
                    )
                out[b, 0] = crop
            return torch.from_numpy(out)
        rng = self.rng
        chosen = rng.choice(len(self.images), size=batch_size, p=self._weights)
        for b, i in enumerate(chosen):
            img = self.images[i]
            t = rng.integers(len(img))
            flat = self._positions[i][rng.integers(len(self._positions[i]))]
            width = img.shape[2] - p + 1
            y0, x0 = flat // width, flat % width
            crop = img[t, y0 : y0 + p, x0 : x0 + p]
            if self.augment:
                crop = np.rot90(crop, int(rng.integers(4)))
                if rng.integers(2):
                    crop = crop[:, ::-1]
            out[b, 0] = crop
        return torch.from_numpy(out)
