"""Batch super-resolution of image files: which files, where the results go, one at a time.

Used by the Super-resolve widget's folder mode (and usable from scripts): the inputs are the
image files of a folder minus earlier results; each result is written next to its input or
into a chosen folder as ``<stem>_sr.tif``, never over an input nor over an earlier result
(``_sr-2``, ``_sr-3``... are used instead); :func:`iter_super_resolve_files` runs them one by
one as a generator of progress events, so that a GUI can show progress and stop between two
windows.

This module imports neither Qt nor napari.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._progress import relay

__all__ = [
    "SUFFIX",
    "FileProgress",
    "folder_inputs",
    "image_shape",
    "iter_super_resolve_files",
    "output_paths",
]

#: Suffix of a result's file name (``frame.tif`` -> ``frame_sr.tif``), as ``cycsr super-resolve``.
SUFFIX = "_sr"


def _is_result(path: Path, suffix: str) -> bool:
    return re.search(rf"{re.escape(suffix)}(-\d+)?$", path.stem) is not None


def folder_inputs(folder: str | os.PathLike[str], *, suffix: str = SUFFIX) -> list[Path]:
    """The image files of ``folder`` (sorted by name), earlier results (``*_sr``) left out.

    Raises
    ------
    OSError
        No such folder.
    ValueError
        The folder holds no image other than earlier results.
    """
    from ._imageio import find_images

    folder = Path(folder)
    if not folder.is_dir():
        raise OSError(f"{folder}: no such folder")
    files = [p for p in find_images([folder]) if not _is_result(p, suffix)]
    if not files:
        raise ValueError(f"{folder}: the folder holds only earlier results ({suffix} files)")
    return files


def output_paths(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    suffix: str = SUFFIX,
) -> list[Path]:
    """Where each input's result goes: ``<stem>_sr.tif`` next to it, or in ``out_dir``.

    Never an input's path, never an existing file and never the same path twice (inputs with
    the same stem, e.g. ``a.tif`` and ``a.png``, get ``a_sr.tif`` and ``a_sr-2.tif``).
    ``.npy`` inputs give ``.npy`` results.

    Examples
    --------
    >>> [p.name for p in output_paths(["/data/x/a.tif", "/data/y/a.png"], "/nonexistent")]
    ['a_sr.tif', 'a_sr-2.tif']
    """
    taken = {Path(p).resolve() for p in inputs}
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        folder = Path(out_dir) if out_dir is not None else path.parent
        ext = ".npy" if path.suffix.lower() == ".npy" else ".tif"
        target = folder / f"{path.stem}{suffix}{ext}"
        n = 2
        while target.resolve() in taken or target.exists():
            target = folder / f"{path.stem}{suffix}-{n}{ext}"
            n += 1
        taken.add(target.resolve())
        out.append(target)
    return out


def image_shape(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """Shape of the image or stack in a TIFF, PNG or NPY file, read from its header only.

    Colour files give ``(..., H, W, 3|4)``, as stored.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
    if suffix in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tuple(tif.series[0].shape)
    from PIL import Image

    with Image.open(path) as im:
        bands = len(im.getbands())
        return (im.height, im.width) if bands == 1 else (im.height, im.width, bands)


@dataclass
class FileProgress:
    """Progress of a batch: file ``index`` (0-based) of ``count``, and its windows."""

    index: int
    count: int
    path: Path
    done: int
    total: int


def iter_super_resolve_files(
    model: Any,
    inputs: Sequence[Path],
    outputs: Sequence[Path],
    *,
    bundle_for: Callable[[tuple[int, int]], Any] | None = None,
    project: bool = False,
    **options: Any,
) -> Iterator[FileProgress]:
    """Super-resolve image files one by one, writing each result as soon as it is done.

    Parameters
    ----------
    model : SRModel
    inputs, outputs : sequences of Path
        Files to read and where to write their results (:func:`output_paths`).
    bundle_for : callable, optional
        ``(H, W) -> FibreBundle`` of an image of that size (masks the result to the field of
        view; with ``project`` the result is projected onto the fibre values).
    project : bool
        Enforce the fibre consistency (needs ``bundle_for``).
    **options
        Passed to :func:`~napari_cycsr.inference.iter_super_resolve` (``device``, ``tile``...).

    Yields
    ------
    FileProgress
        After each batch of windows of each file.

    Returns
    -------
    list of Path
        The files written (the generator's return value). Stopping the iteration stops
        between two batches; the files finished so far are kept, no partial file is written.
    """
    from ._imageio import read_image, write_image
    from .inference import iter_super_resolve

    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} output paths")
    written: list[Path] = []
    for index, (path, target) in enumerate(zip(inputs, outputs)):
        image = read_image(path)
        bundle = bundle_for(tuple(int(s) for s in image.shape[-2:])) if bundle_for else None
        gen = iter_super_resolve(
            model, image, mask=None if bundle is None else bundle.fov_mask,
            bundle=bundle if project else None, **options,
        )  # fmt: skip
        result = yield from relay(
            gen,
            lambda step, i=index, p=Path(path): FileProgress(
                i, len(inputs), p, int(step.done), int(step.total)
            ),
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_image(target, np.asarray(result, dtype=np.float32)))
    return written
