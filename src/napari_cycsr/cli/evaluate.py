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
    FolderMaker,
    Formatter,
    check_outputs,
    check_shape,
    check_writable,
    load_bundle,
    non_negative_int,
    overwrite_option,
    read_values,
)


def _read_image(path: str | os.PathLike[str], what: str) -> np.ndarray:
    image = read_image(path)
    if image.ndim < 2:
        raise CLIError(f"{path}: the {what} must be a 2-D image or a stack, got {image.shape}")
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


def _found_fov(
    lr: np.ndarray | None, lr_path: Any, images: dict[str, np.ndarray]
) -> tuple[np.ndarray | None, str]:
    """The field of view found from the flat surround of the LR image, else of an image."""
    from ..metrics import image_fov

    candidates = [(Path(lr_path).name, lr)] if lr is not None else []
    candidates += list(images.items())
    for name, image in candidates:
        mask = image_fov(image if image.ndim == 2 else image.reshape(-1, *image.shape[-2:])[0])
        if mask is not None:
            return mask, f"inside the field of view found from the flat surround of {name}"
    return None, (
        "over every pixel: no flat surround found in the images (give --fibres to restrict the "
        "scores to the field of view)"
    )


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    p = sub.add_parser(
        "evaluate",
        parents=common,
        formatter_class=Formatter,
        help="PSNR / SSIM / GCF / dGCF / Tot_cs table for several images",
        description=(
            "Compare images (for example TLI, a baseline and the super-resolved result): PSNR\n"
            "and SSIM against a reference image when there is one, the global contrast factor\n"
            "(GCF), its change against the reference and against the LR input (dGCF), the\n"
            "composite score Tot_cs, a no-reference sharpness and, with --values, the cycle\n"
            "consistency error (docs/metrics.md). Real data has no reference: leave it out to\n"
            "get the reference-free measures. Stacks (videos) are scored frame by frame: the\n"
            "table shows the mean over the frames, --csv every frame.\n"
            "Only pixels inside the fibre bundle's field of view count: from --fibres, else\n"
            "found from the images' flat (black) surround, first the --lr image's; the command\n"
            "says which. --whole-frame scores every pixel. Prints a Markdown table.\n"
            "A video gives real data a reference: --leave-one-out VIDEO --frame T scores results\n"
            "for frame T against the HR^ fused from the video's *other* frames (the scored\n"
            "frame does not leak into its reference; docs/video.md)."
        ),
        epilog=(
            "examples:\n"
            "  cycsr evaluate sim/lr.tif results/lr_sr.tif --reference sim/hr.tif \\\n"
            "      --lr sim/lr.tif --fibres sim/fibres.csv --values sim/values.npy\n"
            "  cycsr evaluate a.tif b.tif --reference hr.tif --csv metrics.csv\n"
            "  cycsr evaluate lr.tif lr_sr.tif --lr lr.tif          # real data: no reference\n"
            "  cycsr evaluate tli_0.tif sr_0.tif --leave-one-out frames/ --frame 0 \\\n"
            "      --fibres fibres.csv --background bg.tif"
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="2-D images (or folders) to score")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument(
        "--reference", metavar="HR",
        help="reference image (optional; enables ssim, psnr, dgcf_ref and tot_cs)",
    )  # fmt: skip
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
    p.add_argument("--fibres", metavar="CSV", help="fibre positions: restrict to their FOV")
    p.add_argument(
        "--whole-frame", action="store_true",
        help="score every pixel (default: only the field of view, see above)",
    )  # fmt: skip
    p.add_argument(
        "--values", metavar="NPY",
        help="measured fibre values (N,): adds cycle_error (needs --fibres)",
    )  # fmt: skip
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    overwrite_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..metrics import format_table, iter_evaluate_frames, mean_over_frames, rows_to_csv

    if args.leave_one_out is None and (
        args.frame is not None or args.shifts is not None or args.background is not None
    ):
        raise CLIError("--frame, --shifts and --background belong to --leave-one-out")
    if args.csv is not None:
        outputs = [("--csv", Path(args.csv))]
        inputs = [args.reference, *find_images(args.images), args.lr, args.fibres, args.values]
        inputs += [args.leave_one_out, args.shifts, args.background]
        check_outputs(outputs, [i for i in inputs if i is not None], overwrite=args.overwrite)
        check_writable(outputs)
    reference = frames = None
    against = "the first image"
    if args.leave_one_out is not None:
        reference = _leave_one_out_reference(args)
    elif args.reference is not None:
        reference = _read_image(args.reference, "reference")
    images: dict[str, np.ndarray] = {}
    for path in find_images(args.images):
        image = _read_image(path, "image")
        if reference is not None:
            check_shape(path, image, reference.shape[-2:], "the image", "the reference")
        if frames is None:
            frames, against = image.shape, f"the first image {path.name}"
        elif tuple(image.shape) != tuple(frames):
            raise CLIError(
                f"{path}: the image is {_size(image.shape)} but {against} is {_size(frames)}; "
                "expected the same size (and the same number of frames for stacks)"
            )
        name = path.stem
        n = 2
        while name in images:
            name = f"{path.stem}-{n}"
            n += 1
        images[name] = image
    shape = tuple(frames[-2:])
    if reference is not None and reference.ndim > 2 and reference.shape != frames:
        raise CLIError(
            f"{args.reference}: the reference is {_size(reference.shape)}; expected one 2-D "
            f"image or a stack like the images ({_size(frames)})"
        )
    lr = None
    if args.lr is not None:
        lr = _read_image(args.lr, "LR image")
        check_shape(args.lr, lr, shape, "the LR image", against)
    bundle = mask = values = None
    if args.fibres is not None:
        bundle = load_bundle(args.fibres, shape)
        mask = bundle.fov_mask
        where = f"inside the field of view of the fibres in {args.fibres}"
    if args.whole_frame:
        mask, where = None, "over every pixel (--whole-frame)"
    elif mask is None:
        mask, where = _found_fov(lr, args.lr, images)
    n_frames = int(np.prod(frames[:-2])) if len(frames) > 2 else 1
    if args.values is not None:
        if bundle is None:
            raise CLIError("--values needs --fibres (the values belong to those fibres)")
        values = np.asarray(read_values(args.values), dtype=np.float64)
        if values.shape not in ((bundle.n_fibres,), (n_frames, bundle.n_fibres)):
            raise CLIError(
                f"{args.values}: fibre values of shape {values.shape}; expected "
                f"({bundle.n_fibres},), one value per fibre of {args.fibres}"
                + (f", or ({n_frames}, {bundle.n_fibres}) for the frames" if n_frames > 1 else "")
            )
    frame_rows = [
        row
        for rows in iter_evaluate_frames(
            images, reference=reference, lr=lr, mask=mask,
            bundle=bundle if values is not None else None, values=values, with_sharpness=True,
        )  # fmt: skip
        for row in rows
    ]
    covered = 100.0 if mask is None else 100.0 * float(np.mean(mask))
    print(f"scores {where} ({covered:.0f} % of the pixels)")
    if reference is None:
        print("no --reference: ssim, psnr, dgcf_ref and tot_cs need one and are left out")
    if n_frames > 1:
        print(f"{n_frames} frames: the table gives the mean over the frames (--csv: every frame)")
        print(format_table(mean_over_frames(frame_rows)), end="")
    else:
        print(format_table([{k: v for k, v in r.items() if k != "frame"} for r in frame_rows]),
              end="")  # fmt: skip
    if args.csv is not None:
        rows = frame_rows if n_frames > 1 else [
            {k: v for k, v in r.items() if k != "frame"} for r in frame_rows
        ]  # fmt: skip
        with FolderMaker() as folders:
            folders.make(Path(args.csv).parent)
            write_text(Path(args.csv), rows_to_csv(rows))
        print(f"wrote {args.csv}")
    return 0


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(s)) for s in shape)
