"""``cycsr super-resolve``: apply a model to images, stacks or folders."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .._imageio import IMAGE_SUFFIXES, find_images, read_image, write_image
from ..config import DEFAULT_ENSEMBLE, ENSEMBLE_SIZES
from ._common import (
    CLIError,
    FolderMaker,
    Formatter,
    check_outputs,
    check_writable,
    describe_noise,
    device_option,
    distinct_names,
    load_any_model,
    load_bundle,
    non_negative_int,
    overwrite_option,
    positive_float,
    positive_int,
    precision_option,
    progress_bar,
    project_noise_option,
    quiet_option,
    read_values,
    say,
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
            "--out folder, or to --out itself when it names one file.\n"
            "MODEL is a model file or 'pretrained' / 'pretrained:NAME', a model that ships with\n"
            "the package (--list-pretrained). Inputs whose fibre spacing differs from the\n"
            "model's are resampled to it and back (the spacing comes from --fibres or\n"
            "--spacing; --spacing auto estimates it from the image)."
        ),
        epilog=(
            "examples:\n"
            "  cycsr super-resolve model.safetensors lr.tif --out results/\n"
            "  cycsr super-resolve model.safetensors lr.tif --out lr_sr.tif\n"
            "  cycsr super-resolve model.safetensors videos/ --out results/ --tile 512 \\\n"
            "      --device cuda\n"
            "  cycsr super-resolve pretrained lr.tif --fibres fibres.csv --out results/\n"
            "  cycsr super-resolve --pretrained default lr.tif --spacing auto --out lr_sr.tif\n"
            "  cycsr super-resolve --list-pretrained"
        ),
    )
    p.add_argument(
        "model", nargs="?", metavar="MODEL",
        help="model file from `cycsr train`, or 'pretrained' / 'pretrained:NAME' (omit it "
        "with --pretrained)",
    )  # fmt: skip
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="images, stacks or folders")
    p.add_argument("--out", metavar="DIR|FILE", help="output folder or file (required)")
    p.add_argument(
        "--pretrained", metavar="NAME",
        help="use the pretrained model NAME that ships with the package (e.g. default) "
        "instead of MODEL",
    )  # fmt: skip
    p.add_argument(
        "--list-pretrained", action="store_true",
        help="list the pretrained models and what they were trained on, then exit",
    )  # fmt: skip
    p.add_argument(
        "--spacing", metavar="PX|auto",
        help="fibre spacing of the inputs in pixels (median nearest-neighbour distance), or "
        "'auto' to estimate it from the image (default: from --fibres); used to resample "
        "the inputs to the model's spacing",
    )  # fmt: skip
    p.add_argument(
        "--no-match-spacing", action="store_true",
        help="never resample the inputs to the model's fibre spacing",
    )  # fmt: skip
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
        "--project-iterations", type=non_negative_int, metavar="N",
        help="back-projection steps of the consistency projection (default: 5, or 2 with "
        "--project-noise exact)",
    )  # fmt: skip
    project_noise_option(p, video=True)
    device_option(p)
    precision_option(p)
    threads_option(p)
    p.add_argument(
        "--ensemble", type=int, choices=ENSEMBLE_SIZES, default=DEFAULT_ENSEMBLE, metavar="N",
        help="self-ensemble: run the network on N quarter turns / mirror images of each frame "
        f"and average them turned back ({', '.join(map(str, ENSEMBLE_SIZES))}; default "
        f"{DEFAULT_ENSEMBLE}: N times the network's time, fewer streaks and less noise; 1: "
        "the network once)",
    )  # fmt: skip
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


def _spacing(text: str | None) -> float | str | None:
    if text is None or text == "auto":
        return text
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise CLIError(
            f"--spacing: expected a positive number of pixels or 'auto', got {text!r}"
        ) from None


def _list_pretrained() -> int:
    from .._pretrained import list_pretrained

    models = list_pretrained()
    if not models:
        print("no pretrained model is installed")
        return 0
    for m in models:
        print(
            f"{m['name']}: {m['description']}; fibre spacing {m['fibre_spacing']:.2f} px\n"
            f"    trained on {m['trained_on']}"
        )
    return 0


def run(args: argparse.Namespace) -> int:

    if args.list_pretrained:
        return _list_pretrained()
    inputs = list(args.inputs)
    if args.pretrained is not None:
        if args.model is not None:
            inputs.insert(0, args.model)
        model_spec = f"pretrained:{args.pretrained}"
    else:
        model_spec = args.model
    if model_spec is None or not inputs:
        raise CLIError("give MODEL (or --pretrained) and at least one INPUT")
    if args.out is None:
        raise CLIError("--out is required: an output folder, or one file for one input")
    spacing = _spacing(args.spacing)
    files = find_images(inputs)
    out = Path(args.out)
    single_file = out.suffix.lower() in IMAGE_SUFFIXES
    if single_file and len(files) != 1:
        raise CLIError(
            f"--out {out} names one file but {len(files)} inputs were given; "
            "give a folder for several inputs"
        )
    model = load_any_model(model_spec)
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
    model_path = None if model_spec.startswith("pretrained") else Path(model_spec)
    inputs = [*files, model_path, fibres, args.values]
    check_outputs(outputs, [i for i in inputs if i is not None], overwrite=args.overwrite)
    check_writable(outputs)
    with FolderMaker() as folders:
        folders.make(out.parent if single_file else out)
        for path, target in targets:
            _one(args, model, path, target, fibres, measured, project, spacing)
    return 0


def _one(
    args: argparse.Namespace,
    model: Any,
    path: Path,
    target: Path,
    fibres: Path | None,
    measured: np.ndarray | None,
    project: bool,
    spacing: float | str | None,
) -> None:
    """Super-resolve one input file into ``target``."""
    from ..inference import check_model_spacing, fov_from_image, super_resolve

    image = read_image(path)
    n_frames = int(np.prod(image.shape[:-2], dtype=np.int64))
    mask = bundle = values = None
    if fibres is not None:
        bundle = load_bundle(fibres, tuple(image.shape[-2:]))
        if args.no_match_spacing:
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
    project_noise = args.project_noise
    if project_noise == "video":
        project_noise = _video_noise(path, image, bundle if project else None, values)
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
            project_noise=project_noise,
            spacing=spacing if spacing is not None or bundle is None else bundle.spacing,
            match_spacing=not args.no_match_spacing,
            precision=args.precision,
            threads=args.threads,
            ensemble=args.ensemble,
        )
    finally:
        for bar in bars:
            bar.close()
    write_image(target, np.asarray(result, dtype=np.float32))
    what = f"{n_frames} frames" if image.ndim > 2 else "1 image"
    how = ""
    if project:
        source = "--values" if values is not None else "values sampled from the input"
        steps = args.project_iterations
        steps = f"{steps} it., " if steps is not None else ""
        how = (
            f", projected onto the fibre values ({steps}{describe_noise(project_noise)}"
            f"{' from the video' if args.project_noise == 'video' else ''}"
            f", {source})"
        )
    print(f"{path} ({what}) -> {target}{how}")


def _video_noise(path: Path, image: np.ndarray, bundle: Any, values: Any) -> float:
    """``--project-noise video``: the noise of a stack's fibre values from its registration."""
    from ..consistency import estimate_noise
    from ..video import estimate_stack_noise, frame_values

    if bundle is None:
        raise CLIError(
            "--project-noise video sets the noise of the consistency projection: it needs "
            "--fibres and the projection (not --no-project)"
        )
    if image.ndim != 3 or image.shape[0] < 2:
        raise CLIError(
            f"{path}: --project-noise video needs a stack of at least 2 frames of one video, "
            f"got an image of shape {image.shape}; use 'auto' for single images"
        )
    if values is None:  # the input frames are TLI images: their values at the centres
        values = frame_values(image, bundle, kind="reconstructed")
    try:
        sigma = estimate_stack_noise(image, bundle, values=values)
    except ValueError as err:
        raise CLIError(f"{path}: --project-noise video: {err}") from None
    alone = float(np.median(estimate_noise(values, bundle)))
    say(
        f"{path.name}: noise of the fibre values estimated from the video: {sigma:.4g} "
        f"(from each frame alone, median over the frames: {alone:.4g})"
    )
    return sigma
