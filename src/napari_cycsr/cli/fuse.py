"""``cycsr fuse``: fuse the registered frames of a video into HR^, a HR^ video or a mosaic."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._imageio import IMAGE_SUFFIXES, write_image
from ._common import CLIError, Formatter, non_negative_int, positive_int, quiet_option
from ._video import (
    VIDEO_HELP,
    bundle_and_background,
    frame_list,
    read_video_input,
    registration,
    video_options,
)


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``fuse`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    p = sub.add_parser(
        "fuse",
        parents=common,
        formatter_class=Formatter,
        help="fuse the frames of a video into HR^ (sharper than any frame), a video or mosaic",
        description=(
            "Fuse the registered frames of a pCLE / fibre-bundle video into one image on a\n"
            "frame's grid: HR^, the reference of Ravi et al. It solves for the image whose\n"
            "Voronoi cell means reproduce the core values of every registered frame (least\n"
            "squares, stopped before it fits the noise), so it resolves detail no single\n"
            "frame shows. Frames with a low registration confidence are left out.\n"
            "--mode video gives a sliding-window HR^ video (each frame from its --window\n"
            "neighbours); --mode mosaic one canvas covering every frame. --leave-one-out T\n"
            "builds the HR^ for frame T from the *other* frames: a reference to score frame\n"
            "T's result against (`cycsr evaluate --leave-one-out`). Without --shifts the\n"
            "video is registered first (docs/video.md)."
        ),
        epilog=(
            "examples:\n"
            "  cycsr fuse frames/ --fibres fibres.csv --background bg.tif --out hr.tif\n"
            "  cycsr fuse video.avi --shifts shifts.csv --scale 2 --out hr_x2.tif\n"
            "  cycsr fuse video.avi --mode video --window 8 --out hr_video.tif\n"
            "  cycsr fuse video.avi --mode mosaic --method mean --out mosaic.tif\n"
            "  cycsr fuse frames/ --fibres fibres.csv --leave-one-out 0 --out ref_frame0.tif"
        ),
    )
    p.add_argument("video", metavar="VIDEO", help=VIDEO_HELP)
    video_options(p)
    p.add_argument(
        "--shifts", metavar="CSV", help="shifts from `cycsr register` (default: register)"
    )
    p.add_argument(
        "--reference", type=non_negative_int, default=0, metavar="T",
        help="frame whose grid the result is on",
    )  # fmt: skip
    p.add_argument(
        "--mode", choices=("reference", "video", "mosaic"), default="reference",
        help="one HR^ image, a sliding-window HR^ video, or a mosaic of every frame",
    )  # fmt: skip
    p.add_argument("--scale", type=int, choices=(1, 2, 3, 4), default=1, help="output grid x")
    p.add_argument(
        "--method", choices=("solve", "mean"), default="solve",
        help="solve: least squares on the core values (sharpest); mean: shift-and-add (fast)",
    )  # fmt: skip
    p.add_argument(
        "--window", type=positive_int, default=8, metavar="K",
        help="frames per output frame with --mode video",
    )  # fmt: skip
    p.add_argument(
        "--frames", type=frame_list, metavar="LIST", help="use only these frames, e.g. 0-7,9"
    )
    p.add_argument("--exclude", type=frame_list, metavar="LIST", help="leave these frames out")
    p.add_argument(
        "--leave-one-out", type=non_negative_int, metavar="T",
        help="HR^ for frame T from the other frames (sets --reference T, excludes T)",
    )  # fmt: skip
    p.add_argument(
        "--aperture", type=float, metavar="R",
        help="model each core as the mean over the part of its Voronoi cell within R core "
        "spacings of its centre (default: the whole cell, as Ravi et al.)",
    )  # fmt: skip
    p.add_argument(
        "--gains", action="store_true",
        help="estimate the cores' fixed gains from the video (raw frames without background)",
    )  # fmt: skip
    p.add_argument("--rotation", action="store_true", help="register with rotation")
    p.add_argument("--out", required=True, metavar="FILE", help="image to write (.tif, .npy)")
    quiet_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..video import estimate_lattice, frame_values, fuse, fuse_video
    from ._common import progress_bar

    out = Path(args.out)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise CLIError(f"{out}: expected an output file ending in {', '.join(IMAGE_SUFFIXES)}")
    if args.mode == "video" and out.suffix.lower() == ".png":
        raise CLIError(f"{out}: --mode video writes a stack; use .tif or .npy")
    frames = read_video_input(args.video)
    n = int(frames.shape[0])
    if args.leave_one_out is not None:
        if args.mode != "reference":
            raise CLIError("--leave-one-out builds one image: use it with --mode reference")
        args.reference = args.leave_one_out
    for name, values in (("--frames", args.frames), ("--exclude", args.exclude)):
        if values and max(values) >= n:
            raise CLIError(f"{name}: frame {max(values)} >= the video's {n} frames")
    if args.reference >= n:
        raise CLIError(f"--reference {args.reference}: the video has {n} frames")
    bundle, background = bundle_and_background(args, frames)
    reg = registration(args, frames, bundle, background)
    if bundle is None:
        bundle = estimate_lattice(frames)
        print(f"no --fibres: {bundle.n_fibres} cores estimated from the video "
              f"(spacing {bundle.spacing:.2f} px)")  # fmt: skip
    values = frame_values(frames, bundle, kind=args.kind, background=background)
    exclude = list(args.exclude or [])
    if args.leave_one_out is not None:
        exclude.append(args.leave_one_out)
    common = dict(
        scale=args.scale, method=args.method, gains=True if args.gains else None,
        aperture=args.aperture,
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.mode == "video":
        if args.frames or exclude:
            raise CLIError("--frames / --exclude do not apply to --mode video")
        bar = progress_bar(n, "fuse", unit="frame", disable=args.quiet)
        try:
            result = fuse_video(
                values, bundle, reg, window=args.window,
                progress=lambda e: bar.update(e.done - bar.n), **common,
            )  # fmt: skip
        finally:
            bar.close()
        write_image(out, result)
        print(f"HR^ video: {n} frames, {args.window} per window -> {out}")
        return 0
    image, info = fuse(
        values, bundle, reg, reference=args.reference, frames_used=args.frames,
        exclude=exclude or None, canvas="mosaic" if args.mode == "mosaic" else "reference",
        return_info=True, **common,
    )  # fmt: skip
    write_image(out, image)
    print(f"fused frames: {list(info.frames)}")
    if info.left_out:
        print(f"left out: {list(info.left_out)}")
    print(f"iterations: {info.iterations} (stopped by {info.stopped_by})")
    if args.mode == "mosaic":
        print(
            f"mosaic origin: ({info.origin[0]:.2f}, {info.origin[1]:.2f}) px of frame "
            f"{args.reference}: canvas pixel (0, 0) sits there"
        )
    print(f"wrote {out} {tuple(image.shape)}")
    return 0
