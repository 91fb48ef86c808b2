"""The ``cycsr`` command: the library's main jobs from a shell.

Subcommands (``cycsr <command> --help`` explains each one with examples)::

    cycsr demo           simulate pCLE from a built-in image: pretrained result, fine-tune, report
    cycsr simulate       synthetic pCLE (fibre values + TLI image) from an image
    cycsr detect         find fibre cores on a raw bundle frame -> fibres.csv
    cycsr reconstruct    raw frame(s) + fibres.csv -> TLI image(s)
    cycsr train          train a super-resolution model on LR images (no HR pairs needed)
    cycsr super-resolve  apply a model to images, stacks or folders
    cycsr evaluate       PSNR / SSIM / GCF / dGCF / Tot_cs table for several images
    cycsr register       sub-pixel shifts and confidence of every frame of a video
    cycsr fuse           fuse registered frames into HR^, a HR^ video or a mosaic
    cycsr rate-summary   mean ± sd per method and question of a rating (MOS) study

Each command is one module of this package with ``add_parser(sub, common)`` (its options,
help and examples) and ``run(args)`` (a few lines that hand over to the library); what they
share is in :mod:`._common`. A new command is a new module listed in :data:`COMMANDS`.

Every command exits with status 0 on success, 1 with a one-line ``cycsr: error: ...`` message
on bad input (``--debug`` shows the traceback instead), 2 on a command-line usage error and
130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ._common import PROG, CLIError, Formatter, common_parent, one_line, read_values, set_threads

__all__ = ["COMMANDS", "PROG", "CLIError", "build_parser", "main", "read_values"]

#: The sub-command modules, in the order ``cycsr --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "demo",
    "simulate",
    "detect",
    "reconstruct",
    "train",
    "super_resolve",
    "evaluate",
    "register",
    "fuse",
    "rate_summary",
)

_DESCRIPTION = """\
napari-cycsr: unsupervised super-resolution of fibre-bundle / probe-based confocal laser
endomicroscopy (pCLE) images, by adversarial training with a Voronoi cycle consistency
(Ravi et al.). No paired high-resolution images are needed."""

_EPILOG = """\
typical workflow on your own data:
  cycsr detect background.tif --out fibres.csv
  cycsr reconstruct video.tif --fibres fibres.csv --background background.tif --out lr.tif
  cycsr train lr.tif --fibres fibres.csv --out model.safetensors
  cycsr super-resolve model.safetensors lr.tif --out results/

video (several frames of a moving scene) -> a sharper reference image, HR^:
  cycsr register frames/ --fibres fibres.csv --background background.tif --out shifts.csv
  cycsr fuse frames/ --fibres fibres.csv --background background.tif --shifts shifts.csv \
      --out hr.tif

try it on built-in data first (under a minute on a laptop CPU):
  cycsr demo --out demo_out

`cycsr COMMAND --help` explains each command. Add --debug to see a full traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The ``cycsr`` argument parser (one sub-parser per module of :data:`COMMANDS`)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=_DESCRIPTION, epilog=_EPILOG, formatter_class=Formatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    common = [common_parent()]
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cycsr`` command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on bad input (one-line message on stderr), 2 on a usage error,
        130 when interrupted.

    Examples
    --------
    >>> main(["simulate", "--builtin", "camera", "--size", "96", "--out", "sim"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(getattr(args, "debug", False))
    try:
        set_threads(args)
        return int(args.func(args))
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, KeyError) as error:
        if debug:
            raise
        print(f"{PROG}: error: {one_line(error)}", file=sys.stderr)
        return 1
    except (RuntimeError, ArithmeticError, MemoryError) as error:  # torch, numerics, memory
        if debug:
            raise
        print(
            f"{PROG}: error: {one_line(error)} (run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
