"""What the video commands share: reading a video, its fibres, and its registration."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ._common import CLIError, check_shape, load_bundle, progress_bar, read_2d

VIDEO_HELP = (
    "the video: a video file (AVI, MP4 ...; needs `pip install 'napari-cycsr[video]'`), a "
    "multi-page TIFF, or a folder of frame files (natural order: 2.tif before 10.tif)"
)


def video_options(p: argparse.ArgumentParser) -> None:
    """``--fibres``, ``--background``, ``--reference``, ``--kind`` (shared by the commands)."""
    p.add_argument(
        "--fibres", metavar="CSV",
        help="fibre positions (from `cycsr detect`); without them registration uses the "
        "frames as they are and fusion estimates the cores from the video",
    )  # fmt: skip
    p.add_argument("--background", metavar="BG", help="flat-field frame, for raw frames")
    p.add_argument(
        "--kind", choices=("auto", "raw", "reconstructed"), default="auto",
        help="raw camera frames or reconstructed (TLI-like) frames; auto looks for dark "
        "cladding between the cores",
    )  # fmt: skip


def read_video_input(path: str) -> np.ndarray:
    """The video as a ``(T, H, W)`` array (lazy for long videos), at least 2 frames."""
    from ..video import read_video

    frames = read_video(path)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise CLIError(
            f"{path}: a video needs at least 2 frames (T, H, W), got shape {tuple(frames.shape)}"
        )
    return frames


def bundle_and_background(args: argparse.Namespace, frames: Any) -> tuple[Any, Any]:
    shape = tuple(int(s) for s in frames.shape[-2:])
    bundle = load_bundle(args.fibres, shape) if args.fibres else None
    background = None
    if args.background is not None:
        background = read_2d(args.background, "background frame")
        check_shape(args.background, background, shape, "background frame", "the video")
    return bundle, background


def registration(args: argparse.Namespace, frames: Any, bundle: Any, background: Any) -> Any:
    """``--shifts CSV`` when given, else a fresh registration (with a progress bar)."""
    from ..video import Registration, register

    if getattr(args, "shifts", None):
        path = Path(args.shifts)
        if not path.is_file():
            raise OSError(f"{path}: no such shifts file (make one with `cycsr register`)")
        reg = Registration.from_csv(path)
        if reg.n_frames != frames.shape[0]:
            raise CLIError(
                f"{path}: {reg.n_frames} rows of shifts but the video has {frames.shape[0]} frames"
            )
        return reg
    bar = progress_bar(int(frames.shape[0]), "register", unit="frame", disable=args.quiet)
    try:
        return register(
            frames, bundle, reference=args.reference, background=background, kind=args.kind,
            rotation=getattr(args, "rotation", False),
            progress=lambda e: bar.update(e.done - bar.n),
        )  # fmt: skip
    finally:
        bar.close()


def frame_list(text: str) -> list[int]:
    """``"0-7,9"`` -> ``[0, ..., 7, 9]`` (argparse type)."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected frame numbers like 0-7,9 (from 0), got {text!r}"
        ) from None
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"expected frame numbers >= 0, got {text!r}")
    return out
