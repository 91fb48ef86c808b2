"""``cycsr simulate``: synthetic pCLE (fibre values + TLI image) with its ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .._imageio import read_image, to_unit_float, write_image, write_npy
from ..demo import BUILTIN_IMAGES
from ._common import (
    CLIError,
    FolderMaker,
    Formatter,
    check_outputs,
    check_writable,
    non_negative_float,
    non_negative_int,
    overwrite_option,
    positive_float,
    positive_int,
)


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``simulate`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    from ..simulate import DEFAULT_SPACING
    p = sub.add_parser(
        "simulate",
        parents=common,
        formatter_class=Formatter,
        help="synthetic pCLE from an image (known ground truth)",
        description=(
            "Simulate a pCLE acquisition of an image: a hexagonal fibre lattice with jitter in a\n"
            "circular field of view samples the image (one value per fibre, plus noise), and the\n"
            "display image is the Delaunay linear interpolation (TLI) of those values.\n"
            "Writes to DIR: hr.tif (the ground truth, float32 in [0, 1]), lr.tif (the TLI image,\n"
            "float32), fibres.csv (fibre centres, y,x) and values.npy (the fibre values)."
        ),
        epilog=(
            "examples:\n"
            "  cycsr simulate --builtin camera --out sim/\n"
            "  cycsr simulate photo.png --size 512 --spacing 3 --noise 0.02 --out sim/"
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "image", nargs="?", metavar="IMAGE",
        help="TIFF/PNG/NPY picture to use as ground truth (colour is converted to grey)",
    )  # fmt: skip
    src.add_argument(
        "--builtin", choices=BUILTIN_IMAGES, metavar="NAME",
        help=f"a picture that ships with scikit-image: {', '.join(BUILTIN_IMAGES)}",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument(
        "--spacing", type=positive_float, metavar="PX",
        help="spacing of the hexagonal fibre lattice in pixels (default: "
        f"{DEFAULT_SPACING:.2f}, one fibre per 6 pixels, as in the paper). Each fibre is "
        "moved at random by about 10 %% of the spacing, so the median distance between "
        "neighbouring fibres, which the command prints too, is smaller (about 2.2 px by "
        "default)",
    )  # fmt: skip
    p.add_argument(
        "--noise", type=non_negative_float, default=0.01, metavar="SIGMA",
        help="standard deviation of Gaussian noise on the fibre values (image range is 0-1)",
    )  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    p.add_argument(
        "--size", type=positive_int, metavar="PX",
        help="resize the picture so its longer side is PX pixels",
    )  # fmt: skip
    overwrite_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..demo import builtin_image, resize_longest
    from ..simulate import DEFAULT_SPACING, simulate_pcle

    out = Path(args.out)
    names = ("hr.tif", "lr.tif", "values.npy", "fibres.csv")
    outputs = [("--out", out / name) for name in names]
    check_outputs(outputs, [args.image] if args.image else [], overwrite=args.overwrite)
    check_writable(outputs)
    if args.builtin is not None:
        hr = builtin_image(args.builtin, size=args.size)
        source = f"built-in image {args.builtin!r}"
    else:
        image = read_image(args.image, grey=True)
        if image.ndim != 2:
            raise CLIError(
                f"{args.image}: simulate takes one 2-D image, got shape {image.shape} "
                "(save one frame of the stack)"
            )
        hr = to_unit_float(image)
        if args.size is not None:
            hr = resize_longest(hr, args.size)
        source = str(args.image)
    sim = simulate_pcle(hr, spacing=args.spacing, noise=args.noise, seed=args.seed)
    lattice = DEFAULT_SPACING if args.spacing is None else args.spacing
    with FolderMaker() as folders:
        folders.make(out)
        write_image(out / "hr.tif", np.asarray(sim.hr, dtype=np.float32))
        write_image(out / "lr.tif", np.asarray(sim.lr, dtype=np.float32))
        write_npy(out / "values.npy", np.asarray(sim.values, dtype=np.float32))
        sim.bundle.save_csv(out / "fibres.csv")
    h, w = sim.hr.shape
    print(
        f"simulated pCLE from {source}: {h}x{w} pixels, {sim.bundle.n_fibres} fibres, "
        f"lattice spacing {lattice:.2f} px (median distance between neighbouring fibres "
        f"{sim.bundle.spacing:.2f} px), noise {args.noise:g}, seed {args.seed}"
    )
    print(f"wrote {out / 'hr.tif'}, lr.tif, fibres.csv, values.npy")
    return 0
