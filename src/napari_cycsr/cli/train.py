"""``cycsr train``: train a super-resolution model on LR images (no HR pairs needed)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._imageio import find_images, read_image, to_unit_float
from ..config import PRESETS, TARGET_KINDS
from ._common import (
    PROG,
    CLIError,
    FolderMaker,
    Formatter,
    as_frames,
    check_outputs,
    check_writable,
    device_option,
    finish_distributed,
    format_losses,
    is_main_process,
    key_value,
    load_any_model,
    load_bundle,
    loss_postfix,
    non_negative_int,
    overwrite_option,
    positive_int,
    precision_option,
    progress_bar,
    quiet_option,
    read_values,
    say,
    stop_on_interrupt,
    threads_option,
)

#: TrainConfig fields that `cycsr train --set` may not change (they have their own options
#: or are set by the command itself).
_SET_RESERVED = (
    "target",
    "device",
    "checkpoint_dir",
    "preset",
    "iterations",
    "batch_size",
    "patch",
    "seed",
    "precision",
    "threads",
)


def _read_lr_frames(paths: Sequence[str]) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    for path in find_images(paths):
        array = read_image(path)
        frames.extend(np.asarray(f, dtype=np.float32) for f in as_frames(array))
    return frames


def _read_target_images(paths: Sequence[str]) -> list[np.ndarray]:
    images: list[np.ndarray] = []
    for path in find_images(paths):
        array = read_image(path, grey=True)
        images.extend(to_unit_float(f) for f in as_frames(array))
    return images


def _advance(bar: Any, event: Any) -> None:
    """Move a progress bar to a VideoProgress event."""
    bar.total = event.total
    bar.update(event.done - bar.n)


def _video_registration(args: argparse.Namespace, frames: list[np.ndarray], bundle: Any) -> Any:
    """The LR video's registration: ``--shifts`` when given, else a new one."""
    from ._video import registration

    video = np.stack(frames)
    args.reference, args.kind = 0, "reconstructed"  # LR (TLI) frames, registered to frame 0
    reg = registration(args, video, bundle, None)
    if int(reg.good.sum()) < 2:
        raise CLIError(
            "--video: fewer than 2 frames could be registered (confidence too low): the "
            "frames may not be one moving scene; train without --video"
        )
    return reg


def _training_settings(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The ``--set`` pairs of `cycsr train`, checked against the TrainConfig fields."""
    import dataclasses

    from ..config import RENAMED_FIELDS, TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in RENAMED_FIELDS:
            raise CLIError(f"--set {key}: renamed; use --set {RENAMED_FIELDS[key]}=...")
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


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    p = sub.add_parser(
        "train",
        parents=common,
        formatter_class=Formatter,
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
            "  cycsr train lr.tif --fibres fibres.csv --out model.safetensors \\\n"
            "      --init pretrained --iterations 300\n"
            "  cycsr train video.tif --fibres fibres.csv --out model.safetensors --video\n"
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
        "--target", choices=list(TARGET_KINDS),
        help="target (high-resolution) domain (default: natural; with --video: the fused "
        "video, paired)",
    )  # fmt: skip
    p.add_argument(
        "--target-images", nargs="+", metavar="HR",
        help="HR images or folders for --target images / paired",
    )  # fmt: skip
    p.add_argument(
        "--preset", choices=sorted(PRESETS),
        help="network size: default (CPU-friendly), paper (SRGAN size), tiny (tests) "
        "(default: default)",
    )  # fmt: skip
    p.add_argument(
        "--iterations", type=positive_int, metavar="N",
        help="total training iterations (default: 2000; with --resume: train on to N)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=positive_int, metavar="B",
        help="patches per step (default: 16; 54 for the paper preset)",
    )  # fmt: skip
    p.add_argument(
        "--patch", type=positive_int, metavar="PX",
        help="side of the training patches in pixels (default: 64, as the paper)",
    )  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, help="random seed (default: 0)")
    p.add_argument(
        "--video", action="store_true",
        help="the LR frames are one video of a moving scene, in order: register them, add "
        "the multi-frame cycle consistency (the output for frame t, moved with the scene, "
        "must give back the fibre values of frames t-2..t+2; w_multi 1 unless --set "
        "w_multi=...) and train against the sliding-window fused video as paired targets "
        "(docs/video.md#learning-from-video)",
    )  # fmt: skip
    p.add_argument(
        "--no-fused-targets", action="store_true",
        help="with --video: no fused-video targets (then --target chooses the domain)",
    )  # fmt: skip
    p.add_argument(
        "--shifts", metavar="CSV",
        help="with --video: the registration written by `cycsr register` instead of a new one",
    )  # fmt: skip
    p.add_argument(
        "--set", type=key_value, action="append", metavar="KEY=VALUE",
        help="any other training setting (napari_cycsr.TrainConfig field), JSON value; "
        "repeatable, e.g. --set w_adv=1e-4 --set normalise_vec=true (docs/method.md)",
    )  # fmt: skip
    device_option(p)
    precision_option(p)
    threads_option(p)
    p.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint")
    p.add_argument(
        "--init", metavar="MODEL",
        help="fine-tune: start the network from this model file, or from 'pretrained' / "
        "'pretrained:NAME' (a model that ships with the package); its preset, intensity "
        "scaling and loss settings are used (--set overrides a loss setting); frames of "
        "another fibre spacing are resampled to the model's first",
    )  # fmt: skip
    p.add_argument(
        "--no-match-spacing", action="store_true",
        help="with --init: train on the frames at their own fibre spacing, not resampled to "
        "the model's (as --set match_spacing=false; the run warns)",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint-dir", metavar="DIR",
        help="folder of the checkpoint file (default: MODEL_checkpoints/ next to --out)",
    )  # fmt: skip
    overwrite_option(p)
    quiet_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:

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
    bundle = load_bundle(args.fibres, shape)
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
    if (args.shifts or args.no_fused_targets) and not args.video:
        option = "--shifts" if args.shifts else "--no-fused-targets"
        raise CLIError(f"{option} is used only with --video")
    fused_targets = args.video and not args.no_fused_targets
    if fused_targets and args.target is not None:
        raise CLIError(
            f"--video trains against the fused video (a paired target); add "
            f"--no-fused-targets to use --target {args.target} instead"
        )
    if args.target is None and not fused_targets:
        args.target = "natural"
    if args.video and len(lr_images) < 2:
        raise CLIError("--video needs at least 2 LR frames (a stack, a video or a folder)")
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

    from ..config import CHECKPOINT_NAME
    from ..workflows import checkpoint_dir_for

    if args.checkpoint_dir:
        checkpoint_dir = Path(args.checkpoint_dir)
    else:
        checkpoint_dir = checkpoint_dir_for(out)
    if checkpoint_dir.exists() and not checkpoint_dir.is_dir():
        raise CLIError(f"--checkpoint-dir {checkpoint_dir} is a file; expected a folder")
    checkpoint_file = checkpoint_dir / CHECKPOINT_NAME
    # the model and the checkpoint: never an input, never one file, writable before training
    inputs = [*find_images(args.lr), args.fibres, args.values, args.shifts]
    if args.target_images:
        inputs += find_images(args.target_images)
    check_outputs([("--out", out), ("checkpoint", checkpoint_file)], inputs)
    if args.resume is not None:  # resuming continues its own checkpoint, not the model file
        check_outputs([("--out", out)], [Path(args.resume)], overwrite=args.overwrite)
    check_writable([("--out", out), ("--checkpoint-dir", checkpoint_file)])
    from .._atomic import clean_stale_temporaries

    if checkpoint_dir.is_dir():  # temporaries of a killed earlier run (ours, stale only)
        clean_stale_temporaries(checkpoint_dir)
    with FolderMaker() as folders:
        return _train(args, out, checkpoint_dir, folders, frames=lr_images, bundle=bundle,
                      values=values, target_images=target_images, shape=shape)  # fmt: skip


def _train(
    args: argparse.Namespace,
    out: Path,
    checkpoint_dir: Path,
    folders: FolderMaker,
    *,
    frames: list[np.ndarray],
    bundle: Any,
    values: Any,
    target_images: Any,
    shape: tuple[int, ...],
) -> int:
    """Train with the checked data and outputs (folders made through ``folders``)."""
    from ..training import TrainConfig, Trainer

    if is_main_process():
        folders.make(checkpoint_dir)
    options = {
        "preset": args.preset,
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "patch": args.patch,
        "seed": args.seed,
    }
    options = {k: v for k, v in options.items() if v is not None}
    options.update(_training_settings(args.set or []))
    if args.no_match_spacing:
        options["match_spacing"] = False
    # this machine's choices, also when resuming a run started elsewhere
    options.update(precision=args.precision, threads=args.threads)
    bundles = [bundle] * len(frames)
    registration = noise_levels = None
    noise_note = ""
    if options.get("w_multi") and not args.video:
        raise CLIError(
            "--set w_multi (the multi-frame cycle consistency) needs --video: the LR frames "
            "of one video, in order"
        )
    if args.video:  # one stack of frames in order, registered; fused targets
        from ..workflows import learns_noise_aware, video_training

        reg = _video_registration(args, frames, bundle)
        fused = not args.no_fused_targets
        # without fused targets the video's noise level is estimated (video_training's
        # "auto") for a noise-aware l_vec, unless --set noise_level gives one: no fusion to
        # show, a few seconds (a resumed run may be noise-aware: its config is read later)
        noise_aware = learns_noise_aware(
            {"vec_tolerance": options.get("vec_tolerance"), "init": args.init or args.resume}
        )
        estimate = not fused and noise_aware and options.get("noise_level") is None
        if estimate:
            say("estimating the noise of the fibre values from the video")
        bar = progress_bar(len(frames), "fuse", unit="frame", disable=args.quiet or not fused)
        try:
            prepared = video_training(
                np.stack(frames), bundle, registration=reg,
                values=None if values is None else np.stack(values),
                w_multi=options.get("w_multi", 1.0),
                fused_targets=fused, w_pix=options.get("w_pix", 1.0),
                noise="auto" if estimate else "frames",
                progress=lambda e: _advance(bar, e),
            )  # fmt: skip
        finally:
            bar.close()
        frames, bundles = prepared.lr_images, prepared.bundles
        values, target_images = prepared.values, prepared.target_images
        registration = prepared.registration
        noise_levels, noise_note = prepared.noise_levels, prepared.noise_note
        settings = dict(prepared.settings)
        if "target" in settings:
            args.target = settings.pop("target")
        options = {**settings, **options}
        say(
            f"registered {len(reg.shifts)} frames ({int(reg.good.sum())} good); multi-frame "
            f"cycle consistency w_multi={options['w_multi']:g}"
            + (
                f"; fused video as paired targets (w_pix={options['w_pix']:g}, "
                f"{len(prepared.frames_used)} frames)"
                if target_images is not None
                else ""
            )
        )
    init = None
    if args.init is not None:
        if args.resume is not None:
            raise CLIError("--init starts a new run and --resume continues one: give one of them")
        init = load_any_model(args.init)
        # its network, and its own objective (e.g. the pretrained do-no-harm losses); --set wins
        from ..config import fine_tune_settings

        try:
            network, carried = fine_tune_settings(
                init.generator.config, init.metadata.get("train_config"), options
            )
        except ValueError as err:
            raise CLIError(f"--init: {err}") from None
        options.update(network)
        options.update(carried)
        if carried:
            say(
                "fine-tuning with the model's loss settings: "
                + ", ".join(f"{k}={v}" for k, v in sorted(carried.items()))
            )
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
            registration=registration,
            noise_levels=noise_levels,
            **options,
        )
    else:
        config = TrainConfig(
            device=args.device, checkpoint_dir=str(checkpoint_dir), target=args.target, **options
        )
        trainer = Trainer(
            frames, bundles, config=config, values=values, target_images=target_images,
            init=init, registration=registration, noise_levels=noise_levels,
        )  # fmt: skip
    main_process = trainer.is_main
    cfg = trainer.config
    if main_process:
        folders.make(out.parent)
    say(
        f"training on {sum(len(f) if f.ndim == 3 else 1 for f in frames)} LR frame(s) of "
        f"{shape[0]}x{shape[1]} px, "
        f"{bundle.n_fibres} fibres; target domain {cfg.target!r}, preset {cfg.preset!r}, "
        f"batch {cfg.effective_batch_size}, device {trainer.device}, {trainer.precision}"
        + (f"; resumed at iteration {trainer.iteration}" if args.resume else "")
    )
    if trainer.spacing_note():
        say(f"{trainer.spacing_note()} (the initial model's, as super-resolve runs it)")
    if noise_note and cfg.vec_tolerance and cfg.noise_level is None:
        say(f"{noise_note}, for the noise-aware l_vec")
    started = time.perf_counter()
    last = None
    bar = progress_bar(cfg.iterations, "train", disable=args.quiet or not main_process)
    bar.update(trainer.iteration)
    with stop_on_interrupt(trainer):
        try:
            for event in trainer.run():
                last = event
                bar.update(event.iteration - bar.n)
                bar.set_postfix(loss_postfix(event.losses), refresh=False)
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
        losses = format_losses(getattr(last, "losses", {}))
        print(f"trained to iteration {trainer.iteration} in {elapsed:.0f} s ({losses})")
        print(f"wrote {out} (checkpoint for --resume: {trainer.checkpoint_path})")
    finish_distributed()
    return 130 if stopped else 0
