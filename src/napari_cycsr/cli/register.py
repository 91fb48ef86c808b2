"""``cycsr register``: sub-pixel shifts (and confidence) of every frame of a video -> CSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ._common import CLIError, Formatter, non_negative_int, quiet_option
from ._video import VIDEO_HELP, bundle_and_background, read_video_input, video_options


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``register`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    p = sub.add_parser(
        "register",
        parents=common,
        formatter_class=Formatter,
        help="register the frames of a pCLE video (sub-pixel shifts, confidence) -> CSV",
        description=(
            "Register every frame of a pCLE / fibre-bundle video to a reference frame: the\n"
            "sub-pixel shift (dy, dx) of each frame (a scene point at (y, x) in the reference\n"
            "frame is at (y + dy, x + dx) in that frame), a confidence in [0, 1], and with\n"
            "--rotation an angle. Frames that cannot be registered (blank, defocused, moved\n"
            "out of view) get a low confidence and are marked good=False: `cycsr fuse` leaves\n"
            "them out. With --fibres, raw frames are registered on their reconstructed core\n"
            "values (no fibre pattern). Writes one CSV row per frame (docs/video.md)."
        ),
        epilog=(
            "examples:\n"
            "  cycsr register video.avi --out shifts.csv\n"
            "  cycsr register frames/ --fibres fibres.csv --background bg.tif --out shifts.csv\n"
            "  cycsr register lr_stack.tif --reference 5 --rotation --out shifts.csv"
        ),
    )
    p.add_argument("video", metavar="VIDEO", help=VIDEO_HELP)
    video_options(p)
    p.add_argument(
        "--reference", type=non_negative_int, default=0, metavar="T",
        help="frame the shifts are relative to",
    )  # fmt: skip
    p.add_argument("--rotation", action="store_true", help="also estimate a rotation per frame")
    p.add_argument(
        "--no-chain", action="store_true",
        help="register every frame to the reference directly (default: move the anchor on "
        "to a recent good frame when the overlap with it gets small)",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="CSV", help="shifts file to write")
    quiet_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..video import register
    from ._common import progress_bar

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise CLIError(f"{out}: the shifts are written as CSV; expected a .csv file name")
    frames = read_video_input(args.video)
    if args.reference >= frames.shape[0]:
        raise CLIError(f"--reference {args.reference}: the video has {frames.shape[0]} frames")
    bundle, background = bundle_and_background(args, frames)
    bar = progress_bar(int(frames.shape[0]), "register", unit="frame", disable=args.quiet)
    try:
        reg = register(
            frames, bundle, reference=args.reference, rotation=args.rotation, kind=args.kind,
            background=background, chain=not args.no_chain,
            progress=lambda e: bar.update(e.done - bar.n),
        )  # fmt: skip
    finally:
        bar.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    reg.save_csv(out)
    bad = np.flatnonzero(~reg.good).tolist()
    print(f"frames: {reg.n_frames} (reference {reg.reference}), good: {int(reg.good.sum())}")
    print(f"largest shift: {np.abs(reg.shifts).max():.2f} px")
    if bad:
        print(f"left out (confidence < {reg.min_confidence}): {bad}")
    print(f"wrote {out}")
    return 0
