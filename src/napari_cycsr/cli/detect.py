"""``cycsr detect``: find fibre cores on a raw bundle frame and write their positions as CSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import (
    CLIError,
    FolderMaker,
    Formatter,
    check_outputs,
    check_shape,
    check_writable,
    overwrite_option,
    positive_float,
    read_2d,
)


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``detect`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    p = sub.add_parser(
        "detect",
        parents=common,
        formatter_class=Formatter,
        help="find fibre cores on a raw bundle frame -> fibres.csv",
        description=(
            "Find the fibre cores on a raw camera frame of a fibre bundle (bright cores on a\n"
            "dark cladding). The core spacing is estimated from the image unless --spacing is\n"
            "given. A flat (background/calibration) frame gives the best result: pass it as RAW,\n"
            "or as --background to divide it out. A stack is averaged over its frames first.\n"
            "Prints the number of fibres and their spacing; writes a CSV with y,x columns\n"
            "(napari can open it as a Points layer)."
        ),
        epilog=(
            "examples:\n"
            "  cycsr detect background.tif --out fibres.csv\n"
            "  cycsr detect frame.tif --background background.tif --spacing 6.5 --out fibres.csv"
        ),
    )
    p.add_argument("raw", metavar="RAW", help="raw bundle frame (TIFF/PNG/NPY)")
    p.add_argument("--background", metavar="BG", help="background / flat-field frame")
    p.add_argument(
        "--spacing", type=positive_float, metavar="PX",
        help="expected core spacing in pixels (default: estimated)",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="CSV", help="fibre positions file to write")
    overwrite_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..fibres import FibreBundle

    outputs = [("--out", Path(args.out))]
    check_outputs(outputs, [args.raw, args.background], overwrite=args.overwrite)
    check_writable(outputs)
    raw = read_2d(args.raw, "raw frame")
    background = None
    if args.background is not None:
        background = read_2d(args.background, "background frame")
        check_shape(args.background, background, raw.shape, "background frame", "the raw frame")
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise CLIError(f"{out}: fibre positions are written as CSV; expected a .csv file name")
    bundle = FibreBundle.detect(raw, background=background, spacing=args.spacing)
    with FolderMaker() as folders:
        folders.make(out.parent)
        bundle.save_csv(out)
    print(f"n_fibres: {bundle.n_fibres}")
    print(f"spacing: {bundle.spacing:.3f} px")
    print(f"wrote {out}")
    return 0
