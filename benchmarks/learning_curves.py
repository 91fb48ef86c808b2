"""Learning curves: quality against training iterations, per content class.

Trains one model and scores it every ``--every`` iterations on content-class crops
(``benchmarks/_common.py``: texture, smooth, sparse; test or validation split) simulated
with a given fibre-value noise. At every checkpoint, for each evaluation set: PSNR and SSIM
of the network's output and of the output projected onto the measured fibre values
(noise-aware projection, the default of ``super_resolve`` with fibres), each minus the TLI
input's (mean over the crops), the signed spectrum distance above the fibre sampling
frequency (dB; > 0 = more fine detail than the truth) and the hallucination measure
(detail added where the truth is flat), |ΔGCF| against the truth. Figures are printed and
written to
``benchmarks/results/curves_<tag>.json``.

Training data (``--train``):

* ``images``: the training images of ``run_experiments.py`` (brick, coins; full size);
* ``CLASS:SPLIT``: self-supervised on the LR images of those crops (no HR is used), the
  way a user trains on the frames they want to super-resolve.

Examples::

    python benchmarks/learning_curves.py --train smooth:validation \\
        --eval smooth:validation texture:validation --iterations 1500 --every 250 --tag sm
    python benchmarks/learning_curves.py --set vec_tolerance=1.5 --tag tol
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CONTENT_CLASSES,
    NATURAL_IMAGES,
    REPO_ROOT,
    TRAIN_IMAGES,
    class_crops,
    load_grey,
    parse_settings,
    write_json,
)

RESULTS = REPO_ROOT / "benchmarks" / "results"


def simulate_set(spec: str, noise: float, size: int, count: int, seed: int) -> list[Any]:
    """Simulated pCLE of the crops of ``CLASS:SPLIT`` (seeded per crop)."""
    from napari_cycsr.simulate import simulate_pcle

    cls, split = spec.split(":")
    crops = class_crops(cls, split, size, count)
    base = {"test": 20_000, "validation": 30_000}[split]
    return [
        simulate_pcle(hr, noise=noise, seed=seed * 100_000 + base + 100 * i)
        for i, (_, hr) in enumerate(crops)
    ]


def crop_scores(
    model: Any, sims: list[Any], *, project_noise: Any = "auto", ensemble: int = 1
) -> dict[str, list[float]]:
    """Per crop: differences to TLI, spectrum distances, hallucination, |dGCF| (net, proj).

    ``ensemble``: the self-ensemble size of ``super_resolve`` (default 1, the network once,
    as every learning curve was scored)."""
    from napari_cycsr.consistency import project_consistent
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.metrics import gcf, hallucination, psnr, spectrum_distance, ssim

    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(float(value))

    for sim in sims:
        m, hr, sp = sim.mask, sim.hr, sim.bundle.spacing
        sr = super_resolve(model, sim.lr, device="cpu", mask=m, ensemble=ensemble)
        proj = project_consistent(sr, sim.bundle, sim.values, noise=project_noise)
        p0 = psnr(sim.lr, hr, mask=m, data_range=(0, 1))
        s0 = ssim(sim.lr, hr, mask=m, data_range=(0, 1))
        for name, img in (("net", sr), ("proj", proj)):
            add(f"{name}_dpsnr", psnr(img, hr, mask=m, data_range=(0, 1)) - p0)
            add(f"{name}_dssim", ssim(img, hr, mask=m, data_range=(0, 1)) - s0)
            add(f"{name}_spec", spectrum_distance(img, hr, spacing=sp, mask=m, signed=True))
            add(f"{name}_spec_abs", spectrum_distance(img, hr, spacing=sp, mask=m))
            add(f"{name}_hall", hallucination(img, hr, spacing=sp, mask=m))
            add(f"{name}_adgcf", abs(gcf(np.clip(img, 0, 1), mask=m) - gcf(hr, mask=m)))
        add("tli_spec", spectrum_distance(sim.lr, hr, spacing=sp, mask=m, signed=True))
        add("tli_spec_abs", spectrum_distance(sim.lr, hr, spacing=sp, mask=m))
        add("tli_hall", hallucination(sim.lr, hr, spacing=sp, mask=m))
        add("tli_adgcf", abs(gcf(sim.lr, mask=m) - gcf(hr, mask=m)))
    return rows


def score_set(
    model: Any, sims: list[Any], *, project_noise: Any = "auto", ensemble: int = 1
) -> dict[str, float]:
    """Mean differences to TLI, spectrum distance and hallucination over a set of crops."""
    rows = crop_scores(model, sims, project_noise=project_noise, ensemble=ensemble)
    out = {k: float(np.mean(v)) for k, v in rows.items()}
    out["net_min_dpsnr"] = float(np.min(rows["net_dpsnr"]))
    out["proj_min_dpsnr"] = float(np.min(rows["proj_dpsnr"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default="images", help="'images' or CLASS:SPLIT")
    parser.add_argument("--eval", nargs="+", default=[f"{c}:validation" for c in CONTENT_CLASSES])
    parser.add_argument("--noise", type=float, default=0.01, help="fibre-value noise sd")
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--target", default="natural")
    parser.add_argument("--count", type=int, default=12, help="crops per evaluation set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tag", default="custom")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from napari_cycsr.simulate import simulate_pcle
    from napari_cycsr.training import TrainConfig, Trainer

    torch.set_num_threads(max(1, args.threads))
    overrides = parse_settings(args.set)
    config = TrainConfig(
        preset=args.preset,
        iterations=args.iterations,
        batch_size=args.batch_size,
        patch=args.patch,
        seed=args.seed,
        device="cpu",
        preview_every=0,
        checkpoint_every=0,
        target=args.target,
        **overrides,
    )
    if args.train == "images":
        train = [
            simulate_pcle(load_grey(n), noise=args.noise, seed=args.seed * 1000 + i)
            for i, n in enumerate(TRAIN_IMAGES)
        ]
    else:
        train = simulate_set(args.train, args.noise, 128, args.count, args.seed + 7)
    target_images = None
    if args.target == "images":
        target_images = [load_grey(n) for n in NATURAL_IMAGES]
    evals = {spec: simulate_set(spec, args.noise, 128, args.count, args.seed) for spec in args.eval}
    trainer = Trainer(
        [s.lr for s in train],
        [s.bundle for s in train],
        config=config,
        values=[s.values for s in train],
        target_images=target_images,
    )
    t0 = time.perf_counter()
    curve: list[dict[str, Any]] = []

    def checkpoint(it: int) -> None:
        model = trainer.model
        row: dict[str, Any] = {"iteration": it, "seconds": time.perf_counter() - t0}
        for spec, sims in evals.items():
            row[spec] = score_set(model, sims)
        recent = trainer.history[-args.every :] if trainer.history else []
        row["losses"] = (
            {
                k: float(np.nanmean([h.get(k, np.nan) for h in recent]))
                for k in ("l_vec", "l_adv", "loss_d")
            }
            if recent
            else {}
        )
        curve.append(row)
        parts = [f"it {it:6d} {row['seconds']:7.0f}s"]
        for spec in evals:
            r = row[spec]
            parts.append(
                f"{spec}: net {r['net_dpsnr']:+.2f}/{r['net_dssim']:+.3f} "
                f"spec {r['net_spec']:+.1f} hall {r['net_hall']:.4f} | proj "
                f"{r['proj_dpsnr']:+.2f}/{r['proj_dssim']:+.3f} min {r['proj_min_dpsnr']:+.2f}"
            )
        print("  ".join(parts), flush=True)

    checkpoint(0)
    for event in trainer.run():
        if event.iteration % args.every == 0 or event.iteration == args.iterations:
            checkpoint(event.iteration)
    tli = {spec: {k: v for k, v in curve[0][spec].items() if k.startswith("tli")} for spec in evals}
    write_json(
        args.out / f"curves_{args.tag}.json",
        {
            "command": "python benchmarks/learning_curves.py " + " ".join(argv or sys.argv[1:]),
            "config": config.to_dict(),
            "train": args.train,
            "noise": args.noise,
            "tli": tli,
            "curve": curve,
            "noise_levels": trainer.noise_levels.tolist(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
