"""``cycsr super-resolve``: apply a model to images, stacks or folders."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .._imageio import IMAGE_SUFFIXES, find_images, read_image, write_image
from ._common import (
    CLIError,
    FolderMaker,
    Formatter,
    check_outputs,
    check_writable,
    device_option,
    distinct_names,
    load_bundle,
    non_negative_int,
    overwrite_option,
    positive_int,
    precision_option,
    progress_bar,
    quiet_option,
    read_values,
    threads_option,
    warn,
)


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``super-resolve`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    p = sub.add_parser(
        "super-resolve",
        parents=common,
        formatter_class=Formatter,
        help="apply a model to images, stacks or folders",
        description=(
            "Super-resolve TLI images with a trained model. Inputs are TIFF/PNG/NPY files or\n"
            "folders of them; stacks are processed frame by frame. Large images are processed in\n"
            "overlapping tiles (--tile) to bound memory. Results are float32 in the input's\n"
            "intensity units, written as <name>_sr.tif (<name>_sr.npy for .npy inputs) in the\n"
            "--out folder, or to --out itself when it names one file."
        ),
        epilog=(
            "examples:\n"
            "  cycsr super-resolve model.safetensors lr.tif --out results/\n"
            "  cycsr super-resolve model.safetensors lr.tif --out lr_sr.tif\n"
            "  cycsr super-resolve model.safetensors videos/ --out results/ --tile 512 \\\n"
            "      --device cuda"
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model file from `cycsr train`")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="images, stacks or folders")
    p.add_argument("--out", required=True, metavar="DIR|FILE", help="output folder or file")
    p.add_argument(
        "--fibres", metavar="CSV",
        help="fibre positions of the inputs: pixels outside the bundle's field of view are 0, "
        "and the output is projected onto the measured fibre values (docs/consistency.md)",
    )  # fmt: skip
    p.add_argument(
        "--values", metavar="NPY",
        help="measured fibre values of the one input, (N,) or (T, N) .npy (default with "
        "--fibres: the input sampled at the fibre centres, exact for a TLI image)",
    )  # fmt: skip
    p.add_argument(
        "--no-project", action="store_true",
        help="with --fibres, only mask the output: no consistency projection",
    )  # fmt: skip
    p.add_argument(
        "--project-iterations", type=non_negative_int, default=2, metavar="N",
        help="back-projection steps of the consistency projection (default: %(default)s)",
    )  # fmt: skip
    device_option(p)
    precision_option(p)
    threads_option(p)
    p.add_argument(
        "--tile", type=positive_int, metavar="N",
        help="process N x N tiles (default: whole frames)",
    )  # fmt: skip
    p.add_argument(
        "--overlap", type=non_negative_int, metavar="N",
        help="margin added around each tile in pixels (default: the network's receptive "
        "radius, which makes tiled and whole-image results equal)",
    )  # fmt: skip
    overwrite_option(p)
    quiet_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..io import load_model

    model_path = Path(args.model)
    if not model_path.is_file():
        raise OSError(f"{model_path}: no such model file")
    files = find_images(args.inputs)
    out = Path(args.out)
    single_file = out.suffix.lower() in IMAGE_SUFFIXES
    if single_file and len(files) != 1:
        raise CLIError(
            f"--out {out} names one file but {len(files)} inputs were given; "
            "give a folder for several inputs"
        )
    model = load_model(model_path)
    fibres = None
    if args.fibres is not None:
        fibres = Path(args.fibres)
        if not fibres.is_file():
            raise OSError(f"{fibres}: no such fibre file (make one with `cycsr detect`)")
    project = fibres is not None and not args.no_project
    measured = None
    if args.values is not None:
        if fibres is None or args.no_project:
            raise CLIError("--values needs --fibres and the projection (drop --no-project)")
        if len(files) != 1:
            raise CLIError(
                f"--values belongs to one input, but {len(files)} inputs were given; "
                "run one input at a time"
            )
        measured = np.asarray(read_values(args.values), dtype=np.float32)
    if single_file:
        targets = [(files[0], out)]
    else:
        names = distinct_names(
            files, "_sr", lambda p: ".npy" if p.suffix.lower() == ".npy" else ".tif"
        )
        targets = [(path, out / name) for path, name in zip(files, names)]
    outputs = [("--out", target) for _, target in targets]
    inputs = [*files, model_path, fibres, args.values]
    check_outputs(outputs, inputs, overwrite=args.overwrite)
    check_writable(outputs)
    with FolderMaker() as folders:
        folders.make(out.parent if single_file else out)
        for path, target in targets:
            _one(args, model, path, target, fibres, measured, project)
    return 0


def _one(
    args: argparse.Namespace,
    model: Any,
    path: Path,
    target: Path,
    fibres: Path | None,
    measured: np.ndarray | None,
    project: bool,
) -> None:
    """Super-resolve one input file into ``target``."""
    from ..inference import check_model_spacing, fov_from_image, super_resolve

    image = read_image(path)
    n_frames = int(np.prod(image.shape[:-2], dtype=np.int64))
    mask = bundle = values = None
    if fibres is not None:
        bundle = load_bundle(fibres, tuple(image.shape[-2:]))
        check_model_spacing(model, bundle.spacing)
        mask = bundle.fov_mask
    if measured is not None:
        expected = (*image.shape[:-2], bundle.n_fibres)
        if measured.size != int(np.prod(expected)):
            raise CLIError(
                f"{args.values}: fibre values of shape {measured.shape}; expected "
                f"{expected}: one row per frame of {path}, one column per fibre"
            )
        values = measured.reshape(expected)
    if fibres is None:
        mask = fov_from_image(image)
        guess = (
            f"guessed from its zero surround ({100 * mask.mean():.0f} % of the frame)"
            if mask is not None
            else "the whole frame (it has no zero surround)"
        )
        warn(
            f"{path}: no --fibres: the field of view is {guess}; the edge is filled before "
            "the network and nothing is projected. Pass --fibres FIBRES.csv for the exact "
            "field of view and the consistency projection"
        )
    bars: list[Any] = []

    def progress(done: int, total: int, bars: list[Any] = bars, name: str = path.name) -> None:
        if not bars:
            bars.append(progress_bar(total, name, unit="tile", disable=args.quiet))
        bar = bars[0]
        if bar.total != total:  # grows after an out-of-memory retry with smaller tiles
            bar.total = total
        bar.update(done - bar.n)

    try:
        result = super_resolve(
            model,
            image,
            device=args.device,
            tile=args.tile,
            overlap=args.overlap,
            mask=mask,
            progress=progress,
            bundle=bundle if project else None,
            values=values,
            project_iterations=args.project_iterations,
            precision=args.precision,
            threads=args.threads,
        )
    finally:
        for bar in bars:
            bar.close()
    write_image(target, np.asarray(result, dtype=np.float32))
    what = f"{n_frames} frames" if image.ndim > 2 else "1 image"
    how = ""
    if project:
        source = "--values" if values is not None else "values sampled from the input"
        how = f", projected onto the fibre values ({args.project_iterations} it., {source})"
    print(f"{path} ({what}) -> {target}{how}")
