"""pCLE video: reading, registration, fusion into HR^ (see docs/video.md)."""

from __future__ import annotations

from ._common import VideoProgress
from ._io import VIDEO_SUFFIXES, frame_files, is_video_path, natural_key, read_video
from ._register import Registration, frame_values, iter_register, register

__all__ = [
    "VIDEO_SUFFIXES",
    "Registration",
    "VideoProgress",
    "frame_files",
    "frame_values",
    "is_video_path",
    "iter_register",
    "natural_key",
    "read_video",
    "register",
]
