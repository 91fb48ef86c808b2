"""napari reader contribution: videos (AVI, MP4 ... through PyAV) and folders of frames.

napari's own readers open TIFF stacks but not video files, and they list a folder's files in
text order (``1, 10, 11, 12, 2, ...``). This reader opens both as one ``(T, Y, X)`` image
layer, frames in natural order, lazily (dask) when the video is large. It imports neither Qt
nor napari.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._imageio import VIDEO_SUFFIXES

__all__ = ["get_reader", "read_video_layer"]

LayerDataTuple = tuple[Any, dict[str, Any], str]


def _readable(path: Path) -> bool:
    if path.is_dir():
        from ._imageio import FRAME_SUFFIXES

        return any(
            p.is_file() and p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")
            for p in path.iterdir()
        )
    return path.suffix.lower() in VIDEO_SUFFIXES


def get_reader(path: str | os.PathLike[str] | list[Any]) -> Callable[..., Any] | None:
    """The reader function for ``path`` (a video file or a folder of frames), else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        return read_video_layer if _readable(Path(path)) else None
    except OSError:
        return None


def read_video_layer(path: str | os.PathLike[str] | list[Any]) -> list[LayerDataTuple]:
    """Read a video or a folder of frames as one ``(T, Y, X)`` image layer."""
    from .video import read_video

    if isinstance(path, (list, tuple)):
        path = path[0]
    p = Path(path)
    data = read_video(p)
    name = p.stem if p.is_file() else p.name
    return [(data, {"name": name, "metadata": {"source": str(p)}}, "image")]
