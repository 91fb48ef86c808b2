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
"""

from __future__ import annotations

import argparse
import hashlib
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
    load_grey,
    sparse_spots,
    write_json,
)
from learning_curves import score_set, simulate_set  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
RUNS = REPO_ROOT / "runs" / "pretrained"
PACKAGE = REPO_ROOT / "src" / "napari_cycsr" / "pretrained"
#: Training settings of the shipped default model (TrainConfig fields).
DEFAULT_RECIPE: dict[str, Any] = {
    "preset": "default",
    "batch_size": 16,
    "patch": 64,
    "target": "images",
    "seed": 0,
}
SPOT_SEEDS = tuple(range(5000, 5004))


def training_data(seed: int) -> tuple[list[Any], str]:
    """The simulated training images (every picture at every noise level) and a summary."""
    from napari_cycsr.simulate import simulate_pcle

    sources = [(n, load_grey(n)) for n in PRETRAIN_IMAGES]
    sources += [(f"spots#{s}", sparse_spots(256, s)) for s in SPOT_SEEDS]
    sims = []
    for i, (_, hr) in enumerate(sources):
        for k, noise in enumerate(NOISE_LEVELS):
            sims.append(simulate_pcle(hr, noise=noise, seed=seed * 100_000 + 100 * i + k))
    what = (
        f"simulated pCLE (default fibre spacing, Voronoi cell means, additive Gaussian noise sd "
        f"{', '.join(f'{n:g}' for n in NOISE_LEVELS)}) of scikit-image's "
        f"{', '.join(PRETRAIN_IMAGES)} and {len(SPOT_SEEDS)} synthetic sparse-spot images; "
        f"natural target: {', '.join(NATURAL_IMAGES)}"
    )
    return sims, what


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="default", help="model name (file and manifest)")
    parser.add_argument("--until", type=int, default=None, help="train up to this iteration")
    parser.add_argument("--every", type=int, default=500, help="score and snapshot every N")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--export", action="store_true", help="ship a snapshot")
    parser.add_argument("--pick", type=int, default=None, help="snapshot iteration to ship")
    parser.add_argument("--runs", type=Path, default=RUNS, help="checkpoint folder")
    args = parser.parse_args(argv)
    run_dir = args.runs / args.name
    curve_file = RESULTS / f"pretrained_{args.name}.json"
    if args.export:
        return export(args.name, run_dir, curve_file, args.pick)
    if args.until is None or args.until < 1:
        parser.error("give --until N (N >= 1) to train, or --export")

    import torch

    from napari_cycsr.training import TrainConfig, Trainer

    torch.set_num_threads(max(1, args.threads))
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    recipe = {**DEFAULT_RECIPE, **overrides}
    sims, what = training_data(int(recipe["seed"]))
    data = {
        "lr_images": [s.lr for s in sims],
        "bundles": [s.bundle for s in sims],
        "values": [s.values for s in sims],
        "target_images": [load_grey(n) for n in NATURAL_IMAGES],
    }
    checkpoint = run_dir / "checkpoint.safetensors"
    run_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint.is_file():
        trainer = Trainer.resume(
            checkpoint,
            data["lr_images"],
            data["bundles"],
            values=data["values"],
            target_images=data["target_images"],
            iterations=args.until,
            device="cpu",
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
            checkpoint=checkpoint,
        )
    evals = {
        f"{c}:validation": simulate_set(f"{c}:validation", 0.01, 128, 12, 0)
        for c in CONTENT_CLASSES
    }
    curve = json.loads(curve_file.read_text()) if curve_file.is_file() else None
    if curve is None or curve.get("config") is None:
        curve = {"trained_on": what, "recipe": recipe, "config": None, "points": []}
    done = {p["iteration"] for p in curve["points"]}
    t0 = time.perf_counter()

    def evaluate(it: int) -> None:
        model = trainer.model
        model.metadata.pop("loss_history", None)
        model.save(run_dir / f"snapshot_{it:06d}.safetensors")
        point: dict[str, Any] = {"iteration": it, "seconds": time.perf_counter() - t0}
        for spec, group in evals.items():
            point[spec] = score_set(model, group)
        recent = trainer.history[-args.every :]
        point["losses"] = {
            k: float(np.nanmean([h.get(k, np.nan) for h in recent]))
            for k in ("l_vec", "l_adv", "loss_d")
            if recent
        }
        curve["points"] = [p for p in curve["points"] if p["iteration"] != it] + [point]
        curve["points"].sort(key=lambda p: p["iteration"])
        curve["config"] = trainer.config.to_dict()
        curve["command"] = "python benchmarks/train_pretrained.py " + " ".join(
            a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--until")
        )
        write_json(curve_file, curve)
        parts = [f"it {it:6d}"]
        for spec in evals:
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


def export(name: str, run_dir: Path, curve_file: Path, pick: int | None) -> int:
    """Copy a snapshot into the package and record it in the manifest."""
    from napari_cycsr.io import load_model, save_model

    snaps = sorted(run_dir.glob("snapshot_*.safetensors"))
    if not snaps:
        raise SystemExit(f"no snapshot in {run_dir}: train first")
    if pick is None:
        chosen = snaps[-1]
    else:
        chosen = run_dir / f"snapshot_{pick:06d}.safetensors"
        if not chosen.is_file():
            raise SystemExit(f"no snapshot of iteration {pick} in {run_dir}")
    curve = json.loads(curve_file.read_text())
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
        f"generator trained {it} iterations without high-resolution pairs",
        "trained_on": curve["trained_on"],
        "preset": curve["recipe"].get("preset"),
        "iterations": it,
        "fibre_spacing": float(model.metadata["fibre_spacing"]),
        "noise": list(NOISE_LEVELS),
        "file": target.name,
        "sha256": digest,
        "learning_curve": f"benchmarks/results/{curve_file.name}",
        "reproduce": curve.get("command", "python benchmarks/train_pretrained.py"),
    }
    models = [m for m in manifest["models"] if m["name"] != name]
    models.insert(0 if name == "default" else len(models), entry)
    manifest["models"] = models
    write_json(manifest_file, manifest)
    print(f"exported {chosen.name} (iteration {it}) to {target} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
