"""``cycsr reconstruct``: raw frame(s) + fibre positions -> TLI image(s), optionally projected."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .._imageio import IMAGE_SUFFIXES, read_image, write_image, write_npy
from ._common import (
    CLIError,
    FolderMaker,
    Formatter,
    as_frames,
    check_outputs,
    check_shape,
    check_writable,
    describe_noise,
    load_bundle,
    non_negative_int,
    overwrite_option,
    positive_float,
    project_noise_option,
    read_2d,
)


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``reconstruct`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    p = sub.add_parser(
        "reconstruct",
        parents=common,
        formatter_class=Formatter,
        help="raw frame(s) + fibres.csv -> TLI image(s)",
        description=(
            "Turn raw bundle frames into the standard pCLE display image: read each core's\n"
            "intensity (divided by the background's when --background is given), then\n"
            "interpolate those values on the pixel grid by Delaunay linear interpolation (TLI).\n"
            "Works on one frame or a whole stack (multi-page TIFF / 3-D NPY). The result is\n"
            "float32; pixels outside the fibre bundle are 0."
        ),
        epilog=(
            "examples:\n"
            "  cycsr reconstruct frame.tif --fibres fibres.csv --out lr.tif\n"
            "  cycsr reconstruct video.tif --fibres fibres.csv --background bg.tif --out lr.tif\n"
            "  cycsr reconstruct frame.tif --background bg.tif --out lr.tif  # detects the cores\n"
            "  cycsr reconstruct frame.tif --fibres fibres.csv --project 2 --out sharp.tif"
        ),
    )
    p.add_argument("raw", metavar="RAW", help="raw frame or stack (TIFF/PNG/NPY)")
    p.add_argument(
        "--fibres", metavar="CSV",
        help="fibre positions from `cycsr detect` (default: detect on BG, or on RAW)",
    )  # fmt: skip
    p.add_argument("--background", metavar="BG", help="background / flat-field frame")
    p.add_argument(
        "--spacing", type=positive_float, metavar="PX",
        help="core spacing for detection when --fibres is not given",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="FILE", help="output image (.tif, .npy)")
    p.add_argument(
        "--values-out", metavar="NPY", help="also write the fibre values, (N,) or (T, N), here"
    )
    p.add_argument(
        "--project", type=non_negative_int, default=0, metavar="N",
        help="then project the TLI image onto the measured core values with N steps of "
        "iterative back-projection: a training-free sharpening that keeps the image "
        "consistent with the fibres up to their noise (5 recommended, 2 with --project-noise "
        "exact; docs/consistency.md; default: 0, plain TLI)",
    )  # fmt: skip
    project_noise_option(p)
    overwrite_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..fibres import FibreBundle

    out = Path(args.out)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise CLIError(f"{out}: expected an output file ending in {', '.join(IMAGE_SUFFIXES)}")
    if args.values_out is not None and Path(args.values_out).suffix.lower() != ".npy":
        raise CLIError(f"--values-out {args.values_out}: expected a file name ending in .npy")
    outputs = [("--out", out)]
    if args.values_out is not None:
        outputs.append(("--values-out", Path(args.values_out)))
    check_outputs(outputs, [args.raw, args.background, args.fibres], overwrite=args.overwrite)
    check_writable(outputs)
    raw = read_image(args.raw)
    shape = tuple(raw.shape[-2:])
    background = None
    if args.background is not None:
        background = read_2d(args.background, "background frame")
        check_shape(args.background, background, shape, "background frame", "the raw frame")
    if args.fibres is not None:
        bundle = load_bundle(args.fibres, shape)
        how = f"fibres from {args.fibres}"
    else:
        source = background if background is not None else as_frames(raw).mean(axis=0)
        bundle = FibreBundle.detect(source, spacing=args.spacing)
        how = f"{bundle.n_fibres} fibres detected"
    from ..workflows import reconstruct

    frames = as_frames(raw)
    # the pipeline the Fibres widget runs too: core values -> TLI (-> projection)
    recon, values = reconstruct(
        frames if raw.ndim > 2 else raw, bundle, background=background,
        project=args.project or 0, project_noise=args.project_noise,
    )  # fmt: skip
    method = "Delaunay linear interpolation"
    if args.project:
        method += (
            f" + consistency projection, {args.project} step(s), "
            f"{describe_noise(args.project_noise)}"
        )
    recon = recon.reshape(raw.shape[:-2] + recon.shape[-2:])
    with FolderMaker() as folders:
        folders.make(out.parent)
        write_image(out, recon)
        if args.values_out is not None:
            folders.make(Path(args.values_out).parent)
            write_npy(Path(args.values_out), np.asarray(values, dtype=np.float32))
    n_frames = frames.shape[0]
    print(
        f"reconstructed {n_frames} frame{'s' if n_frames != 1 else ''} ({how}, {method}) -> {out}"
    )
    return 0
