"""pCLE video: reading, registration, fusion into HR^ (see docs/video.md)."""

from __future__ import annotations

from .._imageio import VIDEO_SUFFIXES, frame_files, is_video_path, natural_key, read_video
from ._common import VideoProgress
from ._fuse import (
    FusionInfo,
    Mosaic,
    estimate_gains,
    fuse,
    fuse_video,
    iter_fuse,
    iter_fuse_video,
    leave_one_out,
    mosaic,
    pooled_interpolation,
)
from ._lattice import estimate_lattice, estimate_video_spacing, neighbour_gains, vertex_map
from ._noise import estimate_stack_noise, estimate_video_noise
from ._register import Registration, estimate_fov, frame_values, iter_register, register

__all__ = [
    "VIDEO_SUFFIXES",
    "FusionInfo",
    "Mosaic",
    "Registration",
    "estimate_fov",
    "estimate_gains",
    "estimate_lattice",
    "estimate_stack_noise",
    "estimate_video_noise",
    "estimate_video_spacing",
    "fuse",
    "fuse_video",
    "iter_fuse",
    "iter_fuse_video",
    "leave_one_out",
    "mosaic",
    "neighbour_gains",
    "pooled_interpolation",
    "vertex_map",
    "VideoProgress",
    "frame_files",
    "frame_values",
    "is_video_path",
    "iter_register",
    "natural_key",
    "read_video",
    "register",
]
