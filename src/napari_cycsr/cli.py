"""The ``cycsr`` command: the library's main jobs from a shell.

Subcommands (``cycsr <command> --help`` explains each one with examples)::

    cycsr demo           simulate pCLE from a built-in image, train, super-resolve, report
    cycsr simulate       synthetic pCLE (fibre values + TLI image) from an image
    cycsr detect         find fibre cores on a raw bundle frame -> fibres.csv
    cycsr reconstruct    raw frame(s) + fibres.csv -> TLI image(s)
    cycsr train          train a super-resolution model on LR images (no HR pairs needed)
    cycsr super-resolve  apply a model to images, stacks or folders
    cycsr evaluate       PSNR / SSIM / GCF / dGCF / Tot_cs table for several images

Every command exits with status 0 on success, 1 with a one-line ``cycsr: error: ...`` message
on bad input (``--debug`` shows the traceback instead), 2 on a command-line usage error and
130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._imageio import (
    IMAGE_SUFFIXES,
    find_images,
    read_image,
    to_unit_float,
    write_image,
    write_npy,
    write_text,
)

__all__ = ["build_parser", "main"]

PROG = "cycsr"


class CLIError(ValueError):
    """Bad command-line input found after parsing (reported as one line, exit status 1)."""


# --------------------------------------------------------------------------- helpers


def _is_main_process() -> bool:
    """True on rank 0 of a ``torchrun`` job, and always when not distributed."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return int(os.environ.get("RANK", "0")) == 0


def _say(message: str) -> None:
    """Print a progress/result line on rank 0 only."""
    if _is_main_process():
        print(message, flush=True)


def _progress_bar(total: int, desc: str, unit: str = "it", disable: bool = False) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        dynamic_ncols=True,
        disable=disable or not _is_main_process(),
        file=sys.stderr,
    )


def _frames(array: np.ndarray) -> np.ndarray:
    """``(..., H, W)`` -> ``(T, H, W)`` view."""
    return array.reshape((-1, *array.shape[-2:]))


def _read_2d(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """Read one 2-D image; a stack is averaged over its frames (static fibre geometry)."""
    array = read_image(path)
    if array.ndim > 2:
        array = _frames(array).astype(np.float64).mean(axis=0)
    if min(array.shape) < 8:
        raise CLIError(f"{path}: {what} of shape {array.shape} is too small")
    return array


def _check_shape(
    path: Any, array: np.ndarray, shape: tuple[int, ...], what: str, against: str
) -> None:
    if tuple(array.shape[-2:]) != tuple(shape):
        raise CLIError(
            f"{path}: {what} is {array.shape[-2]}x{array.shape[-1]} pixels but {against} is "
            f"{shape[0]}x{shape[1]}; expected the same frame size"
        )


def _load_bundle(csv_path: str | os.PathLike[str], shape: tuple[int, int]) -> Any:
    from .fibres import FibreBundle

    path = Path(csv_path)
    if not path.is_file():
        raise OSError(f"{path}: no such fibre file (make one with `cycsr detect`)")
    return FibreBundle.from_csv(path, shape)


def _number(kind: type, minimum: float, strict: bool, expected: str) -> Any:
    """An argparse ``type=`` that parses ``kind`` and refuses values below ``minimum``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        too_small = value <= minimum if strict else value < minimum
        if not np.isfinite(value) or too_small:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, 0, True, "a positive integer")
_non_negative_int = _number(int, 0, False, "an integer >= 0")
_positive_float = _number(float, 0.0, True, "a positive number")
_non_negative_float = _number(float, 0.0, False, "a number >= 0")

#: TrainConfig fields that `cycsr train --set` may not change (they have their own options
#: or are set by the command itself).
_SET_RESERVED = ("target", "device", "checkpoint_dir", "preset", "iterations", "batch_size",
                 "patch", "seed")


def _key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (``w_adv=1e-4``, ``normalise_vec=true``); a value that
    is not JSON is kept as a string. Parsed as data: nothing is evaluated."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


# --------------------------------------------------------------------------- simulate


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .demo import builtin_image, resize_longest
    from .simulate import simulate_pcle

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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_image(out / "hr.tif", np.asarray(sim.hr, dtype=np.float32))
    write_image(out / "lr.tif", np.asarray(sim.lr, dtype=np.float32))
    write_npy(out / "values.npy", np.asarray(sim.values, dtype=np.float32))
    sim.bundle.save_csv(out / "fibres.csv")
    h, w = sim.hr.shape
    print(
        f"simulated pCLE from {source}: {h}x{w} pixels, {sim.bundle.n_fibres} fibres, "
        f"spacing {sim.bundle.spacing:.2f} px, noise {args.noise:g}, seed {args.seed}"
    )
    print(f"wrote {out / 'hr.tif'}, lr.tif, fibres.csv, values.npy")
    return 0


# --------------------------------------------------------------------------- detect


def _cmd_detect(args: argparse.Namespace) -> int:
    from .fibres import FibreBundle

    raw = _read_2d(args.raw, "raw frame")
    background = None
    if args.background is not None:
        background = _read_2d(args.background, "background frame")
        _check_shape(args.background, background, raw.shape, "background frame", "the raw frame")
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise CLIError(f"{out}: fibre positions are written as CSV; expected a .csv file name")
    bundle = FibreBundle.detect(raw, background=background, spacing=args.spacing)
    out.parent.mkdir(parents=True, exist_ok=True)
    bundle.save_csv(out)
    print(f"n_fibres: {bundle.n_fibres}")
    print(f"spacing: {bundle.spacing:.3f} px")
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- reconstruct


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from .fibres import FibreBundle

    out = Path(args.out)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise CLIError(f"{out}: expected an output file ending in {', '.join(IMAGE_SUFFIXES)}")
    if args.values_out is not None and Path(args.values_out).suffix.lower() != ".npy":
        raise CLIError(f"--values-out {args.values_out}: expected a file name ending in .npy")
    raw = read_image(args.raw)
    shape = tuple(raw.shape[-2:])
    background = None
    if args.background is not None:
        background = _read_2d(args.background, "background frame")
        _check_shape(args.background, background, shape, "background frame", "the raw frame")
    if args.fibres is not None:
        bundle = _load_bundle(args.fibres, shape)
        how = f"fibres from {args.fibres}"
    else:
        source = background if background is not None else _frames(raw).mean(axis=0)
        bundle = FibreBundle.detect(source, spacing=args.spacing)
        how = f"{bundle.n_fibres} fibres detected"
    frames = _frames(raw)
    values = bundle.core_values(frames if raw.ndim > 2 else raw, background=background)
    recon = np.asarray(bundle.reconstruct(values), dtype=np.float32)
    method = "Delaunay linear interpolation"
    if args.project:
        from .consistency import project_consistent

        recon = project_consistent(recon, bundle, values, iterations=args.project)
        method += f" + consistency projection, {args.project} step(s)"
    recon = recon.reshape(raw.shape[:-2] + recon.shape[-2:])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out, recon)
    if args.values_out is not None:
        write_npy(Path(args.values_out), np.asarray(values, dtype=np.float32))
    n_frames = frames.shape[0]
    print(
        f"reconstructed {n_frames} frame{'s' if n_frames != 1 else ''} "
        f"({how}, {method}) -> {out}"
    )
    return 0


# --------------------------------------------------------------------------- train


def _read_lr_frames(paths: Sequence[str]) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    for path in find_images(paths):
        array = read_image(path)
        frames.extend(np.asarray(f, dtype=np.float32) for f in _frames(array))
    return frames


def _read_target_images(paths: Sequence[str]) -> list[np.ndarray]:
    images: list[np.ndarray] = []
    for path in find_images(paths):
        array = read_image(path, grey=True)
        images.extend(to_unit_float(f) for f in _frames(array))
    return images


def _training_settings(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The ``--set`` pairs of `cycsr train`, checked against the TrainConfig fields."""
    import dataclasses

    from .training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in _SET_RESERVED:
            option = "--" + key.replace("_", "-")
            raise CLIError(f"--set {key}: use the {option} option instead")
        if key not in fields:
            allowed = ", ".join(sorted(fields - set(_SET_RESERVED)))
            raise CLIError(f"--set {key}: unknown training setting; known: {allowed}")
        if key == "betas" and isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, Trainer

    out = Path(args.out)
    if out.suffix.lower() != ".safetensors":
        raise CLIError(
            f"{out}: a model file is written as safetensors; expected a .safetensors name"
        )
    lr_images = _read_lr_frames(args.lr)
    shape = lr_images[0].shape
    for i, image in enumerate(lr_images):
        if image.shape != shape:
            raise CLIError(
                f"LR frame {i} is {image.shape[0]}x{image.shape[1]} but frame 0 is "
                f"{shape[0]}x{shape[1]}; all frames of one bundle must have the same size"
            )
    bundle = _load_bundle(args.fibres, shape)
    values = None
    if args.values is not None:
        v = np.asarray(read_values(args.values), dtype=np.float32)
        v = v.reshape(-1, v.shape[-1])
        if v.shape != (len(lr_images), bundle.n_fibres):
            raise CLIError(
                f"{args.values}: fibre values of shape {v.shape}; expected "
                f"({len(lr_images)}, {bundle.n_fibres}): one row per LR frame, one column per "
                "fibre"
            )
        values = list(v)
    target_images = None
    if args.target in ("images", "paired"):
        if not args.target_images:
            raise CLIError(f"--target {args.target} needs --target-images FILE_OR_FOLDER ...")
        target_images = _read_target_images(args.target_images)
        if args.target == "paired" and len(target_images) != len(lr_images):
            raise CLIError(
                f"--target paired needs one HR image per LR frame: got {len(target_images)} "
                f"HR and {len(lr_images)} LR frames"
            )
    elif args.target_images:
        raise CLIError("--target-images is used only with --target images or paired")

    if args.checkpoint_dir:
        checkpoint_dir = Path(args.checkpoint_dir)
    else:
        checkpoint_dir = out.with_name(f"{out.stem}_checkpoints")
    if checkpoint_dir.exists() and not checkpoint_dir.is_dir():
        raise CLIError(f"--checkpoint-dir {checkpoint_dir} is a file; expected a folder")
    if _is_main_process():
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "preset": args.preset,
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "patch": args.patch,
        "seed": args.seed,
    }
    options = {k: v for k, v in options.items() if v is not None}
    options.update(_training_settings(args.set or []))
    frames = lr_images
    bundles = [bundle] * len(frames)
    if args.resume is not None:
        resume = Path(args.resume)
        if not resume.exists():
            raise OSError(f"{resume}: no such checkpoint")
        trainer = Trainer.resume(
            resume,
            frames,
            bundles,
            args.target,
            values=values,
            target_images=target_images,
            device=args.device,
            checkpoint_dir=checkpoint_dir,
            **options,
        )
    else:
        config = TrainConfig(
            device=args.device, checkpoint_dir=str(checkpoint_dir), target=args.target, **options
        )
        trainer = Trainer(
            frames, bundles, config=config, values=values, target_images=target_images
        )
    main_process = trainer.is_main
    cfg = trainer.config
    if main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
    _say(
        f"training on {len(frames)} LR frame(s) of {shape[0]}x{shape[1]} px, "
        f"{bundle.n_fibres} fibres; target domain {cfg.target!r}, preset {cfg.preset!r}, "
        f"batch {cfg.effective_batch_size}, device {trainer.device}"
        + (f"; resumed at iteration {trainer.iteration}" if args.resume else "")
    )
    started = time.perf_counter()
    last = None
    bar = _progress_bar(cfg.iterations, "train", disable=args.quiet or not main_process)
    bar.update(trainer.iteration)
    with _stop_on_interrupt(trainer):
        try:
            for event in trainer.run():
                last = event
                bar.update(event.iteration - bar.n)
                bar.set_postfix(_loss_postfix(event.losses), refresh=False)
        finally:
            bar.close()
    stopped = trainer.iteration < cfg.iterations  # the same answer on every rank
    if main_process and stopped:
        checkpoint = trainer.checkpoint_path
        argv = [a for a in getattr(args, "argv", []) if not a.startswith("--resume=")]
        if "--resume" in argv:
            k = argv.index("--resume")
            del argv[k : k + 2]
        command = shlex.join([PROG, *argv, "--resume", str(checkpoint)])
        print(
            f"{PROG}: stopped at iteration {trainer.iteration} of {cfg.iterations}; "
            f"checkpoint saved to {checkpoint}. Resume with: {command}",
            file=sys.stderr,
        )
    elif main_process:
        trainer.save(out)
        elapsed = time.perf_counter() - started
        losses = _format_losses(getattr(last, "losses", {}))
        print(f"trained to iteration {trainer.iteration} in {elapsed:.0f} s ({losses})")
        print(f"wrote {out} (checkpoint for --resume: {trainer.checkpoint_path})")
    _finish_distributed()
    return 130 if stopped else 0


@contextlib.contextmanager
def _stop_on_interrupt(trainer: Any) -> Any:
    """First Ctrl-C: finish the current iteration, checkpoint and stop; second: abort."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if _is_main_process():
            print(
                f"\n{PROG}: stopping after this iteration (Ctrl-C again to abort)...",
                file=sys.stderr,
                flush=True,
            )
        trainer.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _finish_distributed() -> None:
    """Leave a torchrun process group cleanly (no-op when not distributed)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def read_values(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a fibre-value array: a ``.npy`` file of shape ``(N,)`` or ``(T, N)``.

    Parameters
    ----------
    path : path-like
        ``.npy`` file (plain numeric; never unpickled).

    Returns
    -------
    ndarray
        The values as stored.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise CLIError(f"{path}: fibre values are read from a .npy file")
    if not path.is_file():
        raise OSError(f"{path}: no such file")
    try:
        values = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise CLIError(f"{path}: not a plain numeric .npy array ({error})") from error
    if values.ndim not in (1, 2) or values.dtype.kind not in "iuf":
        raise CLIError(f"{path}: expected a real (N,) or (T, N) array, got {values.shape}")
    return values


def _loss_postfix(losses: dict[str, Any]) -> dict[str, str]:
    return {name: f"{float(value):.3g}" for name, value in (losses or {}).items()}


def _format_losses(losses: dict[str, Any]) -> str:
    if not losses:
        return "no losses reported"
    return ", ".join(f"{k} {float(v):.4g}" for k, v in losses.items())


# --------------------------------------------------------------------------- super-resolve


def _cmd_super_resolve(args: argparse.Namespace) -> int:
    from .inference import check_model_spacing, super_resolve
    from .io import load_model

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
    targets: list[tuple[Path, Path]] = []
    for path in files:
        if single_file:
            target = out
        else:
            suffix = ".npy" if path.suffix.lower() == ".npy" else ".tif"
            target = out / f"{path.stem}_sr{suffix}"
        targets.append((path, target))
    (out.parent if single_file else out).mkdir(parents=True, exist_ok=True)
    for path, target in targets:
        image = read_image(path)
        n_frames = int(np.prod(image.shape[:-2], dtype=np.int64))
        mask = bundle = values = None
        if fibres is not None:
            bundle = _load_bundle(fibres, tuple(image.shape[-2:]))
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
        bars: list[Any] = []

        def progress(done: int, total: int, bars: list[Any] = bars, name: str = path.name) -> None:
            if not bars:
                bars.append(_progress_bar(total, name, unit="tile", disable=args.quiet))
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
    return 0


# --------------------------------------------------------------------------- evaluate


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .metrics import evaluate, format_table, rows_to_csv

    reference = _read_2d_image(args.reference, "reference")
    shape = reference.shape
    images: dict[str, np.ndarray] = {}
    for path in find_images(args.images):
        image = _read_2d_image(path, "image")
        _check_shape(path, image, shape, "the image", "the reference")
        name = path.stem
        n = 2
        while name in images:
            name = f"{path.stem}-{n}"
            n += 1
        images[name] = image
    lr = None
    if args.lr is not None:
        lr = _read_2d_image(args.lr, "LR image")
        _check_shape(args.lr, lr, shape, "the LR image", "the reference")
    bundle = mask = values = None
    if args.fibres is not None:
        bundle = _load_bundle(args.fibres, shape)
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


def _read_2d_image(path: str | os.PathLike[str], what: str) -> np.ndarray:
    image = read_image(path)
    if image.ndim != 2:
        raise CLIError(f"{path}: the {what} must be one 2-D image, got shape {image.shape}")
    return image.astype(np.float32)


# --------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoEvent, run_demo

    bars: dict[str, Any] = {}

    def progress(event: DemoEvent) -> None:
        if event.stage != "train":
            if event.step == 0:
                _say(f"[{event.stage}] {event.message}")
            return
        bar = bars.get("train")
        if bar is None:
            bar = bars["train"] = _progress_bar(event.total, "train", disable=args.quiet)
        bar.update(event.step - bar.n)
        bar.set_postfix(_loss_postfix(event.losses), refresh=False)
        if event.step >= event.total:
            bar.close()

    try:
        result = run_demo(
            args.out,
            image=args.image,
            size=args.size,
            iterations=args.iterations,
            quick=args.quick,
            preset=args.preset,
            batch_size=args.batch_size,
            patch=args.patch,
            seed=args.seed,
            device=args.device,
            progress=progress,
        )
    finally:
        for bar in bars.values():
            bar.close()
    print()
    print(result.markdown_table)
    print()
    print(f"wrote {result.figure}, {result.metrics_md.name}, {result.model_path.name} and images")
    print(f"in {result.out_dir} ({result.seconds:.0f} s)")
    print(f"open the results in napari:  napari {result.out_dir / 'lr.tif'} {result.sr_path}")
    return 0


# --------------------------------------------------------------------------- parser

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

try it on built-in data first (a few minutes on a laptop CPU):
  cycsr demo --out demo_out

`cycsr COMMAND --help` explains each command. Add --debug to see a full traceback."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the examples' line breaks and show defaults where set."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "%(default)" not in text
            and action.default not in (None, False, argparse.SUPPRESS)
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback on errors",
    )
    return parent


def _device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="torch device: auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps",
    )


def _threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=_positive_int, metavar="N",
        help="CPU threads torch may use (default: torch's choice, one per core); 1 is "
        "fastest on a machine shared with other jobs",
    )  # fmt: skip


def _set_threads(args: argparse.Namespace) -> None:
    threads = getattr(args, "threads", None)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``cycsr`` argument parser (one sub-parser per command)."""
    from .demo import BUILTIN_IMAGES

    parser = argparse.ArgumentParser(
        prog=PROG, description=_DESCRIPTION, epilog=_EPILOG, formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    common = [_common()]

    # demo ---------------------------------------------------------------
    p = sub.add_parser(
        "demo",
        parents=common,
        formatter_class=_Formatter,
        help="the whole method on built-in data: simulate, train, super-resolve, report",
        description=(
            "Run the whole method on a built-in scikit-image picture: simulate a pCLE\n"
            "acquisition (fibre bundle, noise, Delaunay/TLI display image), train the default\n"
            "super-resolution model on it without the ground truth, super-resolve, and compare\n"
            "with TLI, Wiener deconvolution and unsharp masking against the true image.\n"
            "Writes demo.png (figure), metrics.md (table), model.safetensors, and hr/lr/sr TIFFs."
        ),
        epilog=(
            "examples:\n"
            "  cycsr demo                          # a few minutes on a laptop CPU\n"
            "  cycsr demo --quick --out quick_out  # about 30 s, a rough result\n"
            "  cycsr demo --image brick --iterations 3000 --device cuda"
        ),
    )
    p.add_argument("--out", default="demo_out", metavar="DIR", help="output folder")
    p.add_argument(
        "--image", default="camera", choices=BUILTIN_IMAGES, metavar="NAME",
        help=f"built-in picture: {', '.join(BUILTIN_IMAGES)}",
    )  # fmt: skip
    p.add_argument(
        "--iterations", type=_positive_int, metavar="N",
        help="training iterations (default: 300, a few minutes on a CPU; 60 with --quick)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a short run (about 30 s on a CPU)")
    p.add_argument(
        "--size", type=_positive_int, metavar="PX",
        help="resize the picture so its longer side is PX pixels (default: 256; 128 with --quick)",
    )  # fmt: skip
    p.add_argument(
        "--preset", default="default", choices=["default", "paper", "tiny"],
        help="network size",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=_positive_int, metavar="B",
        help="patches per training step (default: 8; 4 with --quick)",
    )  # fmt: skip
    p.add_argument(
        "--patch", type=_positive_int, metavar="PX",
        help="side of the training patches (default: 64; 48 with --quick)",
    )  # fmt: skip
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed")
    _device_option(p)
    _threads_option(p)
    _quiet_option(p)
    p.set_defaults(func=_cmd_demo)

    # simulate -----------------------------------------------------------
    p = sub.add_parser(
        "simulate",
        parents=common,
        formatter_class=_Formatter,
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
        "--spacing", type=_positive_float, metavar="PX",
        help="distance between neighbouring fibre centres in pixels (default: about 2.63, "
        "one fibre per 6 pixels, as in the paper)",
    )  # fmt: skip
    p.add_argument(
        "--noise", type=_non_negative_float, default=0.01, metavar="SIGMA",
        help="standard deviation of Gaussian noise on the fibre values (image range is 0-1)",
    )  # fmt: skip
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed")
    p.add_argument(
        "--size", type=_positive_int, metavar="PX",
        help="resize the picture so its longer side is PX pixels",
    )  # fmt: skip
    p.set_defaults(func=_cmd_simulate)

    # detect -------------------------------------------------------------
    p = sub.add_parser(
        "detect",
        parents=common,
        formatter_class=_Formatter,
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
        "--spacing", type=_positive_float, metavar="PX",
        help="expected core spacing in pixels (default: estimated)",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="CSV", help="fibre positions file to write")
    p.set_defaults(func=_cmd_detect)

    # reconstruct --------------------------------------------------------
    p = sub.add_parser(
        "reconstruct",
        parents=common,
        formatter_class=_Formatter,
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
        "--spacing", type=_positive_float, metavar="PX",
        help="core spacing for detection when --fibres is not given",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="FILE", help="output image (.tif, .npy)")
    p.add_argument(
        "--values-out", metavar="NPY", help="also write the fibre values, (N,) or (T, N), here"
    )
    p.add_argument(
        "--project", type=_non_negative_int, default=0, metavar="N",
        help="then project the TLI image onto the measured core values with N steps of "
        "iterative back-projection: a training-free sharpening that keeps the image "
        "consistent with the fibres (1-2 recommended; docs/consistency.md; default: 0, plain "
        "TLI)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_reconstruct)

    # train --------------------------------------------------------------
    p = sub.add_parser(
        "train",
        parents=common,
        formatter_class=_Formatter,
        help="train a super-resolution model on LR images (no HR pairs needed)",
        description=(
            "Train the super-resolution network on low-resolution (TLI) images of one fibre\n"
            "bundle. The network learns to look like the target domain (an adversarial loss)\n"
            "while its output, averaged over each fibre's Voronoi cell, must give back the\n"
            "measured fibre values (the cycle consistency). Target domains: 'natural' (pictures\n"
            "that ship with scikit-image), 'images' (your own high-resolution pictures, any\n"
            "content, unpaired), 'downscaled' (your LR images downscaled x4) or 'paired'\n"
            "(registered HR images, one per LR frame).\n"
            "Ctrl-C stops cleanly and keeps a checkpoint that --resume continues from.\n"
            "Runs unchanged under torchrun (DistributedDataParallel; rank 0 writes files)."
        ),
        epilog=(
            "examples:\n"
            "  cycsr train lr.tif --fibres fibres.csv --out model.safetensors\n"
            "  cycsr train lr_frames/ --fibres fibres.csv --target images \\\n"
            "      --target-images histology/ --iterations 5000 --out model.safetensors\n"
            "  cycsr train lr.tif --fibres fibres.csv --out model.safetensors \\\n"
            "      --resume model_checkpoints/checkpoint.safetensors\n"
            "  torchrun --nproc_per_node 4 $(which cycsr) train lr.tif --fibres fibres.csv \\\n"
            "      --out model.safetensors --device cuda"
        ),
    )
    p.add_argument(
        "lr", nargs="+", metavar="LR",
        help="LR images, stacks or folders of them (TIFF/PNG/NPY), all of one bundle",
    )  # fmt: skip
    p.add_argument("--fibres", required=True, metavar="CSV", help="fibre positions (y,x CSV)")
    p.add_argument(
        "--values", metavar="NPY",
        help="measured fibre values, (T, N) (default: sampled from the LR images)",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="MODEL", help="model file (.safetensors)")
    p.add_argument(
        "--target", default="natural", choices=["natural", "images", "downscaled", "paired"],
        help="target (high-resolution) domain",
    )  # fmt: skip
    p.add_argument(
        "--target-images", nargs="+", metavar="HR",
        help="HR images or folders for --target images / paired",
    )  # fmt: skip
    p.add_argument(
        "--preset", choices=["default", "paper", "tiny"],
        help="network size: default (CPU-friendly), paper (SRGAN size), tiny (tests) "
        "(default: default)",
    )  # fmt: skip
    p.add_argument(
        "--iterations", type=_positive_int, metavar="N",
        help="total training iterations (default: 2000; with --resume: train on to N)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=_positive_int, metavar="B",
        help="patches per step (default: 16; 54 for the paper preset)",
    )  # fmt: skip
    p.add_argument(
        "--patch", type=_positive_int, metavar="PX",
        help="side of the training patches in pixels (default: 64, as the paper)",
    )  # fmt: skip
    p.add_argument("--seed", type=_non_negative_int, help="random seed (default: 0)")
    p.add_argument(
        "--set", type=_key_value, action="append", metavar="KEY=VALUE",
        help="any other training setting (napari_cycsr.TrainConfig field), JSON value; "
        "repeatable, e.g. --set w_adv=1e-4 --set normalise_vec=true (docs/method.md)",
    )  # fmt: skip
    _device_option(p)
    _threads_option(p)
    p.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint")
    p.add_argument(
        "--checkpoint-dir", metavar="DIR",
        help="folder of the checkpoint file (default: MODEL_checkpoints/ next to --out)",
    )  # fmt: skip
    _quiet_option(p)
    p.set_defaults(func=_cmd_train)

    # super-resolve ------------------------------------------------------
    p = sub.add_parser(
        "super-resolve",
        parents=common,
        formatter_class=_Formatter,
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
        "--project-iterations", type=_non_negative_int, default=2, metavar="N",
        help="back-projection steps of the consistency projection (default: %(default)s)",
    )  # fmt: skip
    _device_option(p)
    _threads_option(p)
    p.add_argument(
        "--tile", type=_positive_int, metavar="N",
        help="process N x N tiles (default: whole frames)",
    )  # fmt: skip
    p.add_argument(
        "--overlap", type=_non_negative_int, metavar="N",
        help="margin added around each tile in pixels (default: the network's receptive "
        "radius, which makes tiled and whole-image results equal)",
    )  # fmt: skip
    _quiet_option(p)
    p.set_defaults(func=_cmd_super_resolve)

    # evaluate -----------------------------------------------------------
    p = sub.add_parser(
        "evaluate",
        parents=common,
        formatter_class=_Formatter,
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
    p.set_defaults(func=_cmd_evaluate)
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, KeyError) or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text


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
        _set_threads(args)
        return int(args.func(args))
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, KeyError) as error:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except (RuntimeError, ArithmeticError, MemoryError) as error:  # torch, numerics, memory
        if debug:
            raise
        print(
            f"{PROG}: error: {_one_line(error)} (run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
