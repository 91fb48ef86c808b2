"""``cycsr evaluate``: PSNR / SSIM / GCF / dGCF / Tot_cs table for several images."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._imageio import find_images, read_image, write_text
from ._common import CLIError, Formatter, check_shape, load_bundle, read_values


def _read_2d_image(path: str | os.PathLike[str], what: str) -> np.ndarray:
    image = read_image(path)
    if image.ndim != 2:
        raise CLIError(f"{path}: the {what} must be one 2-D image, got shape {image.shape}")
    return image.astype(np.float32)


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
            "fibre bundle's field of view count. Prints a Markdown table."
        ),
        epilog=(
            "examples:\n"
            "  cycsr evaluate sim/lr.tif results/lr_sr.tif --reference sim/hr.tif \\\n"
            "      --lr sim/lr.tif --fibres sim/fibres.csv --values sim/values.npy\n"
            "  cycsr evaluate a.tif b.tif --reference hr.tif --csv metrics.csv"
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="2-D images (or folders) to score")
    p.add_argument("--reference", required=True, metavar="HR", help="reference image")
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
