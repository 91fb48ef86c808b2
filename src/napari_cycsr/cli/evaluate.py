"""``cycsr evaluate``: PSNR / SSIM / GCF / dGCF / Tot_cs table for several images."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._imageio import find_images, read_image, write_text
from ._common import (
    CLIError,
    Formatter,
    check_shape,
    load_bundle,
    non_negative_int,
    read_values,
)


def _read_2d_image(path: str | os.PathLike[str], what: str) -> np.ndarray:
    image = read_image(path)
    if image.ndim != 2:
        raise CLIError(f"{path}: the {what} must be one 2-D image, got shape {image.shape}")
    return image.astype(np.float32)


def _leave_one_out_reference(args: argparse.Namespace) -> np.ndarray:
    """HR^ of frame ``args.frame`` from the other frames of the video ``args.leave_one_out``."""
    from ..video import estimate_lattice, frame_values, leave_one_out
    from ._video import bundle_and_background, read_video_input, registration

    if args.frame is None:
        raise CLIError("--leave-one-out needs --frame T: the frame the scored images belong to")
    frames = read_video_input(args.leave_one_out)
    if args.frame >= frames.shape[0]:
        raise CLIError(f"--frame {args.frame}: the video has {frames.shape[0]} frames")
    bundle, background = bundle_and_background(args, frames)
    args.reference, args.kind, args.quiet = 0, "auto", True
    reg = registration(args, frames, bundle, background)
    if bundle is None:
        bundle = estimate_lattice(frames)
    values = frame_values(frames, bundle, background=background)
    image, info = leave_one_out(values, bundle, reg, args.frame, return_info=True)
    print(
        f"reference: HR^ of frame {args.frame} fused from frames {list(info.frames)} of "
        f"{args.leave_one_out}"
    )
    return image


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    p = sub.add_parser(
        "evaluate",
        parents=common,
        formatter_class=Formatter,
        help="PSNR / SSIM / GCF / dGCF / Tot_cs table for several images",
        description=(
            "Compare images (for example TLI, a baseline and the super-resolved result) against\n"
            "a reference image: PSNR and SSIM against the reference, the global contrast factor\n"
            "(GCF), its change against the reference and against the LR input (dGCF), and the\n"
            "composite score Tot_cs (docs/metrics.md). With --fibres, only pixels inside the\n"
            "fibre bundle's field of view count. Prints a Markdown table.\n"
            "Real data has no ground truth: --leave-one-out VIDEO --frame T scores results for\n"
            "frame T of a video against the HR^ fused from the video's *other* frames (the\n"
            "scored frame does not leak into its reference; docs/video.md)."
        ),
        epilog=(
            "examples:\n"
            "  cycsr evaluate sim/lr.tif results/lr_sr.tif --reference sim/hr.tif \\\n"
            "      --lr sim/lr.tif --fibres sim/fibres.csv --values sim/values.npy\n"
            "  cycsr evaluate a.tif b.tif --reference hr.tif --csv metrics.csv\n"
            "  cycsr evaluate tli_0.tif sr_0.tif --leave-one-out frames/ --frame 0 \\\n"
            "      --fibres fibres.csv --background bg.tif"
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="2-D images (or folders) to score")
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--reference", metavar="HR", help="reference image")
    ref.add_argument(
        "--leave-one-out", metavar="VIDEO",
        help="reference: HR^ of frame --frame fused from the other frames of VIDEO (a video "
        "file, multi-page TIFF or folder of frames)",
    )  # fmt: skip
    p.add_argument(
        "--frame", type=non_negative_int, metavar="T",
        help="with --leave-one-out: the frame the scored images belong to",
    )  # fmt: skip
    p.add_argument(
        "--shifts", metavar="CSV",
        help="with --leave-one-out: shifts from `cycsr register` (default: register)",
    )  # fmt: skip
    p.add_argument(
        "--background", metavar="BG", help="with --leave-one-out: flat-field frame (raw video)"
    )
    p.add_argument("--lr", metavar="LR", help="the LR input, for dGCF against the input")
    p.add_argument("--fibres", metavar="CSV", help="fibre positions: restrict to the FOV")
    p.add_argument(
        "--values", metavar="NPY",
        help="measured fibre values (N,): adds cycle_error (needs --fibres)",
    )  # fmt: skip
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..metrics import evaluate, format_table, rows_to_csv

    if args.leave_one_out is not None:
        reference = _leave_one_out_reference(args)
    else:
        if args.frame is not None or args.shifts is not None or args.background is not None:
            raise CLIError("--frame, --shifts and --background belong to --leave-one-out")
        reference = _read_2d_image(args.reference, "reference")
    shape = reference.shape
    images: dict[str, np.ndarray] = {}
    for path in find_images(args.images):
        image = _read_2d_image(path, "image")
        check_shape(path, image, shape, "the image", "the reference")
        name = path.stem
        n = 2
        while name in images:
            name = f"{path.stem}-{n}"
            n += 1
        images[name] = image
    lr = None
    if args.lr is not None:
        lr = _read_2d_image(args.lr, "LR image")
        check_shape(args.lr, lr, shape, "the LR image", "the reference")
    bundle = mask = values = None
    if args.fibres is not None:
        bundle = load_bundle(args.fibres, shape)
        mask = bundle.fov_mask
    if args.values is not None:
        if bundle is None:
            raise CLIError("--values needs --fibres (the values belong to those fibres)")
        values = np.asarray(read_values(args.values), dtype=np.float64)
        if values.shape != (bundle.n_fibres,):
            raise CLIError(
                f"{args.values}: fibre values of shape {values.shape}; expected "
                f"({bundle.n_fibres},), one value per fibre of {args.fibres}"
            )
    rows = evaluate(
        images,
        reference=reference,
        lr=lr,
        mask=mask,
        bundle=bundle if values is not None else None,
        values=values,
    )
    print(format_table(rows), end="")
    if args.csv is not None:
        write_text(Path(args.csv), rows_to_csv(rows))
        print(f"wrote {args.csv}")
    return 0
