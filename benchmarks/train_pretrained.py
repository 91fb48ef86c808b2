"""Train (and reproduce) the pretrained models that ship in ``napari_cycsr/pretrained/``.

The training data are simulated pCLE (``simulate_pcle``, the default fibre spacing) of the
pictures in ``_common.PRETRAIN_IMAGES`` and of synthetic sparse spots, each at every noise
level of ``_common.NOISE_LEVELS``; none of them is a test or validation image of the
content-class benchmark. No high-resolution image is shown to the generator (the method is
unsupervised; the natural target images are unpaired).

Training runs in chunks that resume from a checkpoint, so that a long run can be split
into pieces of a few minutes on a shared machine (``--until N`` trains up to iteration N).
Every ``--every`` iterations the model is scored on the *validation* crops of every content
class (never the test crops) and a snapshot is kept; the learning curve (ΔPSNR / ΔSSIM
against TLI of the network and of the network + noise-aware projection, signed spectrum
distance, hallucination) is written to ``benchmarks/results/pretrained_<name>.json``.
``--export`` copies the chosen snapshot (the last one, or ``--pick ITERATION``) into the
package and records it in ``pretrained/manifest.json``::

    python benchmarks/train_pretrained.py --until 2000          # first chunk
    python benchmarks/train_pretrained.py --until 4000          # resumes at 2000
    python benchmarks/train_pretrained.py --export --pick 4000  # ship the 4000 snapshot

``--branch-from RUN`` starts a run from another run's latest checkpoint, e.g. to go on
with a learning-rate decay (``--set`` on a resumed run changes those settings from there on;
the curve records where it branched and what changed)::

    python benchmarks/train_pretrained.py --name cool --branch-from default \
        --set lr_decay=0.9 --until 6000

``--data`` chooses what the model learns from (each has its own recipe on top of
``DEFAULT_RECIPE``, :data:`DATA_RECIPES`):

* ``frames`` (default): single simulated frames, unsupervised (above);
* ``video``: short simulated videos of tiles of the same pictures (a random walk of the
  scene behind a fixed bundle, fresh noise in every frame), each prepared by
  :func:`napari_cycsr.workflows.video_training` as a user's video would be: registered with
  *estimated* shifts, fused over a sliding window, the fused frames as paired targets
  (the paper's ``T_pair`` made from the video) with the multi-frame cycle consistency. Still
  no true high-resolution image is shown;
* ``supervised``: the ceiling (issue 13 item 4): the same network and frames as ``frames``
  with their *true* high-resolution images as paired targets and a pixel loss only, which
  no user of real data can have.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CONTENT_CLASSES,
    NATURAL_IMAGES,
    NOISE_LEVELS,
    PRETRAIN_IMAGES,
    REPO_ROOT,
    crop_grid,
    dead_leaves,
    load_grey,
    markdown_table,
    parse_settings,
    sparse_spots,
    update_markdown,
    write_json,
)
from learning_curves import score_set, simulate_set  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
DOCS = REPO_ROOT / "docs" / "pretrained.md"
FIGURE_DIR = REPO_ROOT / "docs" / "images"
RUNS = REPO_ROOT / "runs" / "pretrained"
PACKAGE = REPO_ROOT / "src" / "napari_cycsr" / "pretrained"
#: Training settings of the shipped default model (TrainConfig fields). The "tiny" network:
#: it is the one the demo fine-tunes, it runs 576 x 576 frames at about 7 frames/s on a 2-core
#: CPU (the "default" network at 0.5, docs/performance.md), and it trains at about 0.17 s per
#: iteration on one core there, so thousands of iterations fit a CPU budget; learning rate
#: 3e-4 as the demo's.
DEFAULT_RECIPE: dict[str, Any] = {
    "preset": "tiny",
    "batch_size": 16,
    "patch": 64,
    "learning_rate": 3e-4,
    "target": "images",
    "seed": 0,
    # do no harm (docs/method.md): the noise-aware two-scale l_vec, a penalty on the change
    # to the input, flips and rotations of the LR patches. w_res 1.0, not the 0.1 of the
    # first try: on the validation crops 0.1 lost 0.47-0.82 dB on smooth content by
    # iteration 500-1000 (and 2.4 dB by 2000 without these settings); 1.0 kept it within 0.1
    "vec_tolerance": 1.5,
    "w_res": 1.0,
    "augment_lr": True,
}
SPOT_SEEDS = tuple(range(5000, 5004))
#: ``--leaves N``: N synthetic dead-leaves textures (:func:`_common.dead_leaves`) of
#: LEAVES_SIZE px, seeds from 6000, join the pictures (no photograph of any content class).
LEAVES_SEED, LEAVES_SIZE = 6000, 352
#: What ``--data`` changes in the recipe. ``video``: the settings of
#: ``workflows.video_training`` (fused frames as paired targets, pixel loss 1, multi-frame
#: consistency 1) without the penalty on the change to the input (w_res 0: the fused target,
#: not the TLI input, is what the output should approach), as the "paired HR^ + multi" arm
#: of bench_video_training.py. ``supervised``: run_experiments.py's supervised reference
#: (pixel loss against the truth only, no discriminator).
DATA_RECIPES: dict[str, dict[str, Any]] = {
    "frames": {},
    "video": {"target": "paired", "w_pix": 1.0, "w_multi": 1.0, "w_res": 0.0},
    "supervised": {
        "target": "paired",
        "w_pix": 1.0,
        "w_vec": 0.0,
        "w_adv": 0.0,
        "w_reg": 0.0,
        "w_res": 0.0,
        "warmup": 10_000_000,
    },
}
#: How each ``--data`` is described in the manifest.
LEARNS_FROM: dict[str, str] = {
    "frames": "on single frames without high-resolution pairs",
    "video": "on simulated videos, their own fused frames as targets (no true image)",
    "supervised": "with the true high-resolution images (supervised ceiling, not for use)",
}
#: Simulated videos for ``--data video``: scene tiles of VIDEO_SCENE px (frames of
#: VIDEO_FRAME px, the rest holds the motion), up to VIDEO_TILES per picture, VIDEO_LENGTH
#: frames each, every tile at every noise level.
VIDEO_SCENE, VIDEO_FRAME, VIDEO_TILES, VIDEO_LENGTH = 176, (144, 144), 4, 8


def pretraining_pictures(leaves: int = 0) -> list[tuple[str, Any]]:
    """The pictures every run learns from: PRETRAIN_IMAGES, the synthetic spot images and
    ``leaves`` synthetic dead-leaves textures."""
    sources = [(n, load_grey(n)) for n in PRETRAIN_IMAGES]
    sources += [(f"spots#{s}", sparse_spots(256, s)) for s in SPOT_SEEDS]
    seeds = range(LEAVES_SEED, LEAVES_SEED + leaves)
    return sources + [(f"leaves#{s}", dead_leaves(LEAVES_SIZE, s)) for s in seeds]


def _pictures_text(leaves: int) -> str:
    text = f"scikit-image's {', '.join(PRETRAIN_IMAGES)} and {len(SPOT_SEEDS)} synthetic "
    if not leaves:
        return text + "sparse-spot images"
    return text + f"sparse-spot images and {leaves} synthetic dead-leaves textures"


def training_data(seed: int, leaves: int = 0) -> tuple[list[Any], str]:
    """The simulated training images (every picture at every noise level) and a summary."""
    from napari_cycsr.simulate import simulate_pcle

    sources = pretraining_pictures(leaves)
    sims = []
    for i, (_, hr) in enumerate(sources):
        for k, noise in enumerate(NOISE_LEVELS):
            sims.append(simulate_pcle(hr, noise=noise, seed=seed * 100_000 + 100 * i + k))
    what = (
        f"simulated pCLE (default fibre spacing, Voronoi cell means, additive Gaussian noise sd "
        f"{', '.join(f'{n:g}' for n in NOISE_LEVELS)}) of {_pictures_text(leaves)}; "
        f"natural target: {', '.join(NATURAL_IMAGES)}"
    )
    return sims, what


def video_data(seed: int, leaves: int = 0) -> tuple[dict[str, list[Any]], str]:
    """``--data video``: tiles of the pretraining pictures as simulated videos, prepared by
    ``workflows.video_training`` (estimated registration, fused targets)."""
    from napari_cycsr.simulate import simulate_pcle_video
    from napari_cycsr.workflows import video_training

    sources = pretraining_pictures(leaves)
    data: dict[str, list[Any]] = {k: [] for k in ("lr", "bundles", "values", "reg", "targets")}
    n_videos = n_frames = skipped = 0
    for i, (name, picture) in enumerate(sources):
        tiles = crop_grid(picture, VIDEO_SCENE, VIDEO_TILES)
        if not tiles:  # smaller than a tile (none of the pictures today): the whole picture
            tiles = [picture.astype(np.float32)]
        for k, (tile, noise) in enumerate(itertools.product(tiles, NOISE_LEVELS)):
            vid = simulate_pcle_video(
                tile, VIDEO_LENGTH, shape=VIDEO_FRAME if min(tile.shape) >= VIDEO_SCENE else None,
                step=0.7, noise=noise, seed=seed * 100_000 + 60_000 + 100 * i + k,
            )  # fmt: skip
            try:
                prepared = video_training(vid.lr, vid.bundle, values=vid.values)
            except ValueError as err:  # too little structure to register: as a user would
                print(f"skipped video {k} of {name} (noise {noise:g}): {err}", flush=True)
                skipped += 1
                continue
            data["lr"] += prepared.lr_images
            data["bundles"] += prepared.bundles
            data["values"] += prepared.values
            data["reg"] += prepared.registration
            data["targets"] += prepared.target_images
            n_videos += 1
            n_frames += len(prepared.frames_used)
    what = (
        f"{n_videos} simulated pCLE videos ({n_frames} registered frames of "
        f"{VIDEO_FRAME[0]}x{VIDEO_FRAME[1]} px: {VIDEO_LENGTH}-frame random walks of up to "
        f"{VIDEO_TILES} {VIDEO_SCENE} px tiles of each picture behind a fixed bundle, default "
        f"fibre spacing, every tile at noise sd {', '.join(f'{n:g}' for n in NOISE_LEVELS)}) "
        f"of {_pictures_text(leaves)}; targets: each video's own sliding-window fusion "
        f"(estimated registration), no true image; {skipped} video(s) left out: too "
        "few frames registered"
    )
    return data, what


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="default", help="model name (file and manifest)")
    parser.add_argument("--until", type=int, default=None, help="train up to this iteration")
    parser.add_argument("--every", type=int, default=500, help="score and snapshot every N")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--validate-noise",
        type=float,
        nargs="+",
        default=[0.01],
        metavar="SD",
        help="noise levels of the validation crops (default 0.01); --pick best takes the "
        "snapshot whose worst class and level gains most",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--export", action="store_true", help="ship a snapshot")
    parser.add_argument(
        "--as",
        dest="ship_as",
        default=None,
        metavar="MODEL",
        help="with --export: the name the model ships as (default: the run's --name)",
    )
    parser.add_argument("--docs", action="store_true", help="write docs/pretrained.md sections")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score the run's saved snapshots on the validation cells (--validate-noise) their "
        "curve points lack, without training (so --pick best compares every snapshot on the "
        "same cells)",
    )
    parser.add_argument(
        "--pick",
        type=_pick,
        default=None,
        help="snapshot to ship: an iteration, or 'best' (the one whose worst class gains most "
        "over TLI on the validation crops, network + projection); default the last",
    )
    parser.add_argument("--runs", type=Path, default=RUNS, help="checkpoint folder")
    parser.add_argument(
        "--branch-from",
        default=None,
        metavar="RUN",
        help="start this run from run RUN's latest checkpoint (its weights, optimiser and "
        "iteration), e.g. to go on with other --set values such as a learning-rate decay; "
        "this run's curve starts at that iteration",
    )
    parser.add_argument(
        "--leaves",
        type=int,
        default=0,
        metavar="N",
        help="add N synthetic dead-leaves textures to the pictures (default 0)",
    )
    parser.add_argument(
        "--data",
        choices=tuple(DATA_RECIPES),
        default="frames",
        help="what the model learns from: single frames (unsupervised), simulated videos "
        "(fused targets + multi-frame term) or the true images (the supervised ceiling)",
    )
    args = parser.parse_args(argv)
    run_dir = args.runs / args.name
    curve_file = RESULTS / f"pretrained_{args.name}.json"
    if args.export:
        return export(args.name, run_dir, curve_file, args.pick, ship_as=args.ship_as)
    if args.rescore:
        return rescore(run_dir, curve_file, args.validate_noise, args.threads)
    if args.docs:
        return docs(args.name, curve_file)
    if args.until is None or args.until < 1:
        parser.error("give --until N (N >= 1) to train, or --export")
    if args.leaves < 0:
        parser.error(f"--leaves must be >= 0, got {args.leaves}")
    known = json.loads(curve_file.read_text()).get("leaves", 0) if curve_file.is_file() else None
    if known is not None and known != args.leaves:
        parser.error(f"run {args.name!r} learns from --leaves {known}, not {args.leaves}")

    import torch

    from napari_cycsr.io import save_model
    from napari_cycsr.training import TrainConfig, Trainer

    torch.set_num_threads(max(1, args.threads))
    overrides = parse_settings(args.set)
    recipe = {**DEFAULT_RECIPE, **DATA_RECIPES[args.data], **overrides}
    t_data = time.perf_counter()
    if args.data == "video":
        vids, what = video_data(int(recipe["seed"]), args.leaves)
        data = {
            "lr_images": vids["lr"],
            "bundles": vids["bundles"],
            "values": vids["values"],
            "target_images": vids["targets"],
            "registration": vids["reg"],
        }
    else:
        sims, what = training_data(int(recipe["seed"]), args.leaves)
        data = {
            "lr_images": [s.lr for s in sims],
            "bundles": [s.bundle for s in sims],
            "values": [s.values for s in sims],
            "target_images": [load_grey(n) for n in NATURAL_IMAGES],
            "registration": None,
        }
        if args.data == "supervised":
            data["target_images"] = [s.hr for s in sims]
            what += "; supervised: each frame's true image as its paired target"
    print(f"data ready in {time.perf_counter() - t_data:.0f} s: {what}", flush=True)
    checkpoint = run_dir / "checkpoint.safetensors"
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.branch_from is not None and not checkpoint.is_file():
        it = branch(args.branch_from, args.runs, run_dir, curve_file, args.data, args.leaves)
        print(f"branched from run {args.branch_from!r} at iteration {it}", flush=True)
    elif args.branch_from is not None:
        print(f"run {args.name!r} has its own checkpoint: resuming it (--branch-from starts "
              "a new run only)", flush=True)  # fmt: skip
    if checkpoint.is_file():
        # --set on a resumed run changes those settings from here on (recorded in the curve)
        trainer = Trainer.resume(
            checkpoint,
            data["lr_images"],
            data["bundles"],
            values=data["values"],
            target_images=data["target_images"],
            registration=data["registration"],
            iterations=args.until,
            device="cpu",
            **overrides,
        )
        print(f"resumed at iteration {trainer.iteration}", flush=True)
    else:
        config = TrainConfig(
            iterations=args.until,
            device="cpu",
            preview_every=0,
            checkpoint_every=args.every,
            **recipe,
        )
        trainer = Trainer(
            data["lr_images"],
            data["bundles"],
            config=config,
            values=data["values"],
            target_images=data["target_images"],
            registration=data["registration"],
            checkpoint=checkpoint,
        )
    evals = validation_sets(args.validate_noise)
    curve = json.loads(curve_file.read_text()) if curve_file.is_file() else None
    if curve is None or curve.get("config") is None:
        curve = {
            "trained_on": what, "data": args.data, "recipe": recipe, "config": None, "points": [],
            "leaves": args.leaves,
        }  # fmt: skip
    done = {p["iteration"] for p in curve["points"]}
    changed = settings_changed(curve.get("config"), trainer.config.to_dict(), overrides)
    if changed:
        print(f"from iteration {trainer.iteration} on: {changed}", flush=True)
        curve.setdefault("changes", []).append({"iteration": trainer.iteration, "set": changed})
        write_json(curve_file, curve)
    t0 = time.perf_counter()

    def evaluate(it: int) -> None:
        model = trainer.model
        model.metadata.pop("loss_history", None)
        save_model(model, run_dir / f"snapshot_{it:06d}.safetensors")
        point: dict[str, Any] = {"iteration": it, "seconds": time.perf_counter() - t0}
        # "auto" resolves per machine (bf16 where the CPU computes it natively): say which ran
        point["precision"] = trainer.precision
        for spec, group in evals.items():
            point[spec] = score_set(model, group)
        recent = trainer.history[-args.every :]
        point["losses"] = {
            k: float(np.nanmean([h.get(k, np.nan) for h in recent]))
            for k in ("l_vec", "l_multi", "l_pix", "l_adv", "loss_d")
            if any(np.isfinite(h.get(k, np.nan)) for h in recent)
        }
        curve["points"] = [p for p in curve["points"] if p["iteration"] != it] + [point]
        curve["points"].sort(key=lambda p: p["iteration"])
        curve["config"] = trainer.config.to_dict()
        curve["command"] = "python benchmarks/train_pretrained.py " + " ".join(
            _without_until(argv if argv is not None else sys.argv[1:])
        )
        write_json(curve_file, curve)
        parts = [f"it {it:6d} ({point['seconds']:.0f} s)"]
        for spec in (k for k in evals if k.endswith(":validation")):
            r = point[spec]
            parts.append(
                f"{spec.split(':')[0]} net {r['net_dpsnr']:+.2f}/{r['net_dssim']:+.3f} proj "
                f"{r['proj_dpsnr']:+.2f}/{r['proj_dssim']:+.3f} spec {r['proj_spec']:+.1f}"
            )
        print("  ".join(parts), flush=True)

    if 0 not in done and trainer.iteration == 0:
        evaluate(0)
    for event in trainer.run():
        if event.iteration % args.every == 0 or event.iteration == args.until:
            evaluate(event.iteration)
    return 0


def settings_changed(
    before: dict[str, Any] | None, now: dict[str, Any], given: dict[str, Any]
) -> dict[str, Any]:
    """The ``--set`` settings whose value on a resumed run differs from the run's config so
    far (``before``: the curve's config; ``None`` for a run that has not been scored yet).

    >>> settings_changed({"lr_decay": 0.0, "seed": 0}, {"lr_decay": 0.9, "seed": 0},
    ...                  {"lr_decay": 0.9, "seed": 0})
    {'lr_decay': 0.9}
    >>> settings_changed(None, {"lr_decay": 0.9}, {"lr_decay": 0.9})
    {}
    >>> settings_changed({"betas": [0.9, 0.99]}, {"betas": (0.9, 0.99)}, {"betas": (0.9, 0.99)})
    {}
    """
    if before is None:
        return {}
    now = json.loads(json.dumps({k: now[k] for k in given if k in now}))  # as the curve holds it
    return {k: v for k, v in now.items() if before.get(k) != v}


def branch(base: str, runs: Path, run_dir: Path, curve_file: Path, data: str, leaves: int) -> int:
    """Start run ``run_dir`` from run ``base``'s latest checkpoint: copy the checkpoint, the
    snapshot of its iteration and the curve's point there (with the base's recipe, the
    command and where it branched); returns the iteration."""
    from napari_cycsr.io import load_checkpoint

    base_dir = runs / base
    base_checkpoint = base_dir / "checkpoint.safetensors"
    base_curve_file = RESULTS / f"pretrained_{base}.json"
    if not base_checkpoint.is_file():
        raise SystemExit(f"--branch-from {base}: no checkpoint in {base_dir}")
    if not base_curve_file.is_file():
        raise SystemExit(f"--branch-from {base}: no learning curve {base_curve_file}")
    base_curve = json.loads(base_curve_file.read_text())
    theirs = (base_curve.get("data", "frames"), base_curve.get("leaves", 0))
    if theirs != (data, leaves):
        raise SystemExit(
            f"--branch-from {base}: it learns from --data {theirs[0]} --leaves {theirs[1]}, "
            f"give the same (not --data {data} --leaves {leaves})"
        )
    _, meta = load_checkpoint(base_checkpoint)
    it = int(meta["iteration"])
    point = [p for p in base_curve["points"] if p["iteration"] == it]
    snapshot = base_dir / f"snapshot_{it:06d}.safetensors"
    if not point or not snapshot.is_file():
        raise SystemExit(
            f"--branch-from {base}: iteration {it} of its checkpoint has no scored snapshot"
        )
    shutil.copyfile(snapshot, run_dir / snapshot.name)
    tmp = run_dir / "checkpoint.safetensors.tmp"
    shutil.copyfile(base_checkpoint, tmp)
    tmp.replace(run_dir / "checkpoint.safetensors")
    curve = {
        **{k: v for k, v in base_curve.items() if k not in ("points", "changes")},
        "points": point,
        "branched_from": {"run": base, "iteration": it, "command": base_curve.get("command")},
    }
    write_json(curve_file, curve)
    return it


def docs(name: str, curve_file: Path) -> int:
    """The manifest table and the learning curve (table and figure) in docs/pretrained.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = json.loads(curve_file.read_text())
    points = curve["points"]
    block = f"pretrained-curve-{name}"  # a block and a figure per run
    figure = FIGURE_DIR / f"pretrained_curve_{name}.png"
    manifest_file = PACKAGE / "manifest.json"
    shipped = json.loads(manifest_file.read_text())["models"] if manifest_file.is_file() else []
    rows = [
        [
            m["name"],
            m["preset"],
            m["iterations"],
            f"{m['fibre_spacing']:.2f}",
            f"{(PACKAGE / m['file']).stat().st_size / 1e6:.2f} MB",
            m["trained_on"],
        ]
        for m in shipped
    ]
    manifest_md = markdown_table(
        ["name", "preset", "iterations", "fibre spacing (px)", "file", "trained on"], rows
    )
    classes = [k for k in points[0] if k.endswith(":validation")]
    header = ["iteration"] + [
        f"{c.split(':')[0]}: ΔPSNR / ΔSSIM net, + projection; spectrum (dB)" for c in classes
    ]
    table_rows = []
    for pt in points:
        row = [str(pt["iteration"])]
        for c in classes:
            r = pt[c]
            row.append(
                f"{r['net_dpsnr']:+.2f} / {r['net_dssim']:+.3f}, {r['proj_dpsnr']:+.2f} / "
                f"{r['proj_dssim']:+.3f}; {r['proj_spec']:+.1f}"
            )
        table_rows.append(row)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    its = [pt["iteration"] for pt in points]
    for c in classes:
        label = c.split(":")[0]
        axes[0].plot(its, [pt[c]["proj_dpsnr"] for pt in points], marker="o", label=label)
        axes[1].plot(its, [pt[c]["proj_dssim"] for pt in points], marker="o", label=label)
        axes[2].plot(its, [pt[c]["proj_spec"] for pt in points], marker="o", label=label)
    titles = ("ΔPSNR vs TLI (dB)", "ΔSSIM vs TLI", "signed spectrum distance (dB)")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration")
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"pretrained '{name}': network + noise-aware projection on the validation crops "
        "(noise sd 0.01)",
        fontsize=9,
    )
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=100)
    plt.close(fig)
    curve_md = "\n".join(
        [
            f"Written by `python benchmarks/train_pretrained.py --docs --name {name}` from "
            f"`benchmarks/results/{curve_file.name}` (training: `{curve.get('command', '')}`, "
            "chunks with `--until`). Validation crops of each content class (12 each, 128 "
            "px, noise sd 0.01; never the test crops); cells: the network's ΔPSNR (dB) / "
            "ΔSSIM against TLI, the same after the noise-aware projection, and the signed "
            "spectrum distance above the fibre sampling frequency after the projection "
            "(TLI: about -12.7 dB texture, -5.3 smooth, -9.9 sparse; 0 = the truth's)."
            + _lineage(curve),
            "",
            markdown_table(header, table_rows),
            "",
            f"![learning curve](images/{figure.name})",
        ]
    )
    sections = {"pretrained-manifest": manifest_md, block: curve_md}
    others = sorted(RESULTS.glob("pretrained_*.json"))
    runs = {f.stem.removeprefix("pretrained_"): f for f in others if _is_curve(f)}
    if len(runs) > 1:
        sections["pretrained-curves"] = compare_curves(runs)
    update_markdown(DOCS, sections)
    print(f"updated {DOCS} and {figure}")
    return 0


def _is_curve(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "points" in data and "recipe" in data


def compare_curves(runs: dict[str, Path]) -> str:
    """One figure with every run's learning curve (network + projection, ΔPSNR against TLI
    on each class's validation crops), so that "how far from supervised" can be read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {name: json.loads(f.read_text()) for name, f in runs.items()}
    classes = list(CONTENT_CLASSES)
    fig, axes = plt.subplots(1, len(classes), figsize=(4 * len(classes), 3.4), sharex=True)
    rows = []
    for name, curve in curves.items():
        pts = curve["points"]
        its = [p["iteration"] for p in pts]
        data = _learns_from(curve)
        for ax, cls in zip(axes, classes):
            ax.plot(its, [p[f"{cls}:validation"]["proj_dpsnr"] for p in pts], marker=".",
                    label=name if data == name else f"{name} ({data})")  # fmt: skip
        last = pts[-1]
        trained = [p for p in pts if p["iteration"] > 0] or pts
        best = {c: max(p[f"{c}:validation"]["proj_dpsnr"] for p in trained) for c in classes}
        rows.append(
            [
                name,
                data,
                curve["recipe"].get("preset", ""),
                str(last["iteration"]),
            ]  # fmt: skip
            + [f"{last[f'{c}:validation']['proj_dpsnr']:+.2f} ({best[c]:+.2f})" for c in classes]
        )
    for ax, cls in zip(axes, classes):
        ax.set_title(f"{cls}: ΔPSNR vs TLI (dB), + projection", fontsize=9)
        ax.set_xlabel("iteration")
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = FIGURE_DIR / "pretrained_curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    table = markdown_table(
        ["run", "learns from", "network", "last iteration"]
        + [f"{c}: last (best trained snapshot) ΔPSNR + projection" for c in classes],
        rows,
    )
    return (
        "Written by `python benchmarks/train_pretrained.py --docs` from every learning curve in "
        "`benchmarks/results/pretrained_*.json` (validation crops, noise sd 0.01, network + "
        "noise-aware projection against TLI):\n\n"
        + table
        + f"\n\n![learning curves](images/{out.name})"
    )


def _learns_from(curve: dict[str, Any]) -> str:
    """A run's ``--data``, with the dead-leaves textures it added (``--leaves``)."""
    data = str(curve.get("data", "frames"))
    leaves = int(curve.get("leaves", 0))
    return f"{data} + {leaves} dead-leaves" if leaves else data


def _lineage(curve: dict[str, Any]) -> str:
    """Where a run branched from and what its ``--set`` changed on the way, for the docs."""
    out = ""
    base = curve.get("branched_from")
    if base:
        out += (
            f" Branched from run `{base['run']}` at iteration {base['iteration']} (its "
            f"training: `{base.get('command')}`)."
        )
    for change in curve.get("changes", []):
        settings = ", ".join(f"{k} = {v}" for k, v in change["set"].items())
        out += f" From iteration {change['iteration']} on: {settings}."
    return out


def _without_until(args: list[str]) -> list[str]:
    """The command line without ``--until N`` (the chunks differ only in it) and without
    ``--runs DIR`` (where this machine kept the checkpoints: not part of the recipe)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--until", "--runs"):
            skip = True
        elif not a.startswith(("--until=", "--runs=")):
            out.append(a)
    return out


def validation_sets(levels: list[float]) -> dict[str, list[Any]]:
    """The validation crops of every content class at noise sd 0.01 (the docs tables) and at
    the other ``levels`` (more cells for the pick rule), keyed as in the curve points."""
    sets = {
        f"{c}:validation": simulate_set(f"{c}:validation", 0.01, 128, 12, 0)
        for c in CONTENT_CLASSES
    }
    for noise in levels:
        if noise != 0.01:
            sets.update(
                {
                    f"{c}:validation@{noise:g}": simulate_set(f"{c}:validation", noise, 128, 12, 0)
                    for c in CONTENT_CLASSES
                }
            )
    return sets


def rescore(run_dir: Path, curve_file: Path, levels: list[float], threads: int) -> int:
    """Fill the validation cells that the curve's points lack from the saved snapshots (a
    snapshot without a point, e.g. of a run stopped while scoring it, gets one)."""
    import torch

    from napari_cycsr.io import load_model

    if not curve_file.is_file():
        raise SystemExit(f"no learning curve {curve_file}: train first")
    torch.set_num_threads(max(1, threads))
    curve = json.loads(curve_file.read_text())
    evals = validation_sets(levels)
    known = {p["iteration"] for p in curve["points"]}
    for snap in sorted(run_dir.glob("snapshot_*.safetensors")):
        it = int(snap.stem.split("_")[1])
        if it not in known:
            curve["points"].append({"iteration": it})
    curve["points"].sort(key=lambda p: p["iteration"])
    for point in curve["points"]:
        missing = [k for k in evals if k not in point]
        snap = run_dir / f"snapshot_{point['iteration']:06d}.safetensors"
        if not missing:
            continue
        if not snap.is_file():
            raise SystemExit(f"iteration {point['iteration']} lacks {missing} and {snap} is gone")
        model = load_model(snap)
        for spec in missing:
            point[spec] = score_set(model, evals[spec])
        write_json(curve_file, curve)  # after every snapshot: an interruption keeps the work
        print(f"iteration {point['iteration']}: scored {', '.join(missing)}", flush=True)
    return 0


def _portable(command: str | None) -> str:
    """A recorded training command without machine-specific options (:func:`_without_until`)."""
    import shlex

    words = shlex.split(command or "python benchmarks/train_pretrained.py")
    return shlex.join(words[:2] + _without_until(words[2:]))


def _base_steps(curve: dict[str, Any]) -> str:
    """For a branched run: the base run's training up to the branch, then ", "."""
    base = curve.get("branched_from")
    if not base:
        return ""
    return f"{_portable(base.get('command'))} --until {base['iteration']}, then "


def _pick(text: str) -> int | str:
    if text == "best":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an iteration or 'best', got {text!r}") from None


def best_iteration(curve: dict[str, Any]) -> int:
    """The snapshot whose worst content class (and validation noise level, with
    ``--validate-noise``) gains most over TLI (network + projection, validation crops): the
    rule the shipped models were chosen by (at noise sd 0.01 only)."""
    scored = [p for p in curve["points"] if p["iteration"] > 0]
    if not scored:
        raise SystemExit("no trained snapshot was scored yet: train first")

    cells = {k for p in scored for k in p if ":validation" in k}
    lacking = [p["iteration"] for p in scored if not cells <= p.keys()]
    if lacking:
        raise SystemExit(
            f"snapshots {lacking} were not scored on every validation cell the others were: "
            "run --rescore with the same --validate-noise first"
        )

    def worst(point: dict[str, Any]) -> float:
        return min(point[k]["proj_dpsnr"] for k in cells)

    return int(max(scored, key=worst)["iteration"])


def export(
    run: str, run_dir: Path, curve_file: Path, pick: int | str | None, ship_as: str | None = None
) -> int:
    """Copy a snapshot of run ``run`` into the package as model ``ship_as`` (default: the
    run's name) and record it in the manifest."""
    name = ship_as or run
    from napari_cycsr.io import load_model, save_model

    snaps = sorted(run_dir.glob("snapshot_*.safetensors"))
    if not snaps:
        raise SystemExit(f"no snapshot in {run_dir}: train first")
    curve = json.loads(curve_file.read_text())
    picked = "" if pick is None else f" --pick {pick}"
    if pick == "best":
        pick = best_iteration(curve)
        print(f"best snapshot on the validation crops: iteration {pick}")
    if pick is None:
        chosen = snaps[-1]
    else:
        chosen = run_dir / f"snapshot_{pick:06d}.safetensors"
        if not chosen.is_file():
            raise SystemExit(f"no snapshot of iteration {pick} in {run_dir}")
    model = load_model(chosen)
    it = int(model.metadata.get("iteration", 0))
    model.metadata.pop("loss_history", None)
    PACKAGE.mkdir(parents=True, exist_ok=True)
    target = PACKAGE / f"{name}.safetensors"
    tmp = target.with_name(target.name + ".tmp")
    save_model(model, tmp)
    shutil.move(tmp, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    manifest_file = PACKAGE / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {"models": []}
    entry = {
        "name": name,
        "description": f"the {model.config.channels}-channel, {model.config.blocks}-block "
        f"generator trained {it} iterations {LEARNS_FROM[curve.get('data', 'frames')]}",
        "data": curve.get("data", "frames"),
        "trained_on": curve["trained_on"],
        # the pictures, by scikit-image name (the demo says when its picture is one of them)
        "pretrain_images": list(PRETRAIN_IMAGES),
        # the unpaired natural target (a video model's targets are its own fused frames)
        "target_images": list(NATURAL_IMAGES) if curve.get("data", "frames") == "frames" else [],
        "preset": curve["recipe"].get("preset"),
        "iterations": it,
        "fibre_spacing": float(model.metadata["fibre_spacing"]),
        "noise": list(NOISE_LEVELS),
        "file": target.name,
        "sha256": digest,
        "learning_curve": f"benchmarks/results/{curve_file.name}",
        "reproduce": _base_steps(curve) + f"{_portable(curve.get('command'))} "
        f"--until {curve['points'][-1]['iteration']}, then python benchmarks/train_pretrained.py "
        f"--name {run} --export{picked}" + (f" --as {name}" if name != run else ""),
    }
    models = [m for m in manifest["models"] if m["name"] != name]
    models.insert(0 if name == "default" else len(models), entry)  # the default first
    manifest["models"] = models
    write_json(manifest_file, manifest)
    print(f"exported {chosen.name} (iteration {it}) to {target} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
