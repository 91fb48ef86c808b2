"""Consistency projection of the TLI image, against TLI and Wiener deconvolution.

Default mode: simulates pCLE (``simulate_pcle``, seed 0) of 256 x 256 crops of scikit-image
pictures, then scores the TLI image, Wiener deconvolution (balance estimated per frame), the
TLI image projected *exactly* onto the measured fibre values with 1, 2, 3, 5 and 10
back-projection steps (``noise=None``) and the noise-aware projection (the default,
:func:`napari_cycsr.consistency.project_consistent`): PSNR and SSIM against the true image,
GCF (true image in the last column), cycle error, and the median time of one projection over
``--repeats`` runs.

``--classes`` mode: the content classes of ``benchmarks/_common.py`` (texture, smooth,
sparse; 12 crops of 128 px each, ``--split validation`` by default, the crops the settings
were chosen on) at four noise levels: the exact projection (2 steps), the noise-aware
projection with the noise estimated from the values (the default) and with the true noise
level at tolerances 1, 1.5 and 2; mean ΔPSNR / ΔSSIM against TLI and the worst crop's
ΔPSNR, and the estimated / true noise level. Prints Markdown tables (used in
``docs/consistency.md``)::

    python benchmarks/bench_consistency.py
    python benchmarks/bench_consistency.py --classes
    python benchmarks/bench_consistency.py --classes --split test
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: (picture, y0, x0) of the 256 x 256 crops.
CROPS = (("camera", 100, 100), ("astronaut", 0, 100), ("coffee", 100, 200), ("brick", 0, 0))
STEPS = (1, 2, 3, 5, 10)


def _crop(name: str, y0: int, x0: int, size: int = 256) -> np.ndarray:
    from skimage import data
    from skimage.color import rgb2gray

    img = np.asarray(getattr(data, name)(), dtype=np.float64)
    if img.ndim == 3:
        img = rgb2gray(img[..., :3] / 255.0)
    else:
        img = img / 255.0
    return img[y0 : y0 + size, x0 : x0 + size].astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    from napari_cycsr.baselines import wiener
    from napari_cycsr.consistency import project_consistent
    from napari_cycsr.metrics import cycle_error, gcf, psnr, ssim
    from napari_cycsr.simulate import simulate_pcle

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (median)")
    parser.add_argument("--classes", action="store_true", help="content classes x noise")
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    args = parser.parse_args(argv)
    if args.classes:
        return classes(args.split)

    for name, y0, x0 in CROPS:
        sim = simulate_pcle(_crop(name, y0, x0), seed=0)
        b, m, v, hr = sim.bundle, sim.bundle.fov_mask, sim.values, sim.hr
        rows = [("TLI", sim.lr, "")]
        rows.append(("Wiener", wiener(sim.lr, b.spacing, mask=m), ""))
        for k in STEPS:
            times = []
            for _ in range(max(1, args.repeats)):
                t0 = time.perf_counter()
                out = project_consistent(sim.lr, b, v, iterations=k, noise=None)
                times.append(time.perf_counter() - t0)
            rows.append(
                (f"TLI + exact projection, {k} step(s)", out, f"{np.median(times) * 1e3:.1f}")
            )
        times = []
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            out = project_consistent(sim.lr, b, v)
            times.append(time.perf_counter() - t0)
        label = "TLI + projection (noise-aware, 5 steps, noise estimated)"
        rows.append((label, out, f"{np.median(times) * 1e3:.1f}"))
        print(
            f"\n{name} crop ({y0}, {x0}), {b.n_fibres} fibres, spacing {b.spacing:.2f} px; "
            f"GCF of the true image {gcf(hr, mask=m):.3f}\n"
        )
        print("| method | PSNR (dB) | SSIM | GCF | cycle error | time (ms) |")
        print("|---|---|---|---|---|---|")
        for label, img, ms in rows:
            print(
                f"| {label} | {psnr(img, hr, mask=m, data_range=(0, 1)):.2f} "
                f"| {ssim(img, hr, mask=m, data_range=(0, 1)):.3f} "
                f"| {gcf(np.clip(img, 0, 1), mask=m):.3f} "
                f"| {cycle_error(img, b, v):.2e} | {ms} |"
            )
    return 0


def classes(split: str) -> int:
    """The ``--classes`` table: projections per content class and noise level."""
    from _common import CONTENT_CLASSES, NOISE_LEVELS, class_crops
    from napari_cycsr.consistency import estimate_noise, project_consistent
    from napari_cycsr.metrics import psnr, ssim
    from napari_cycsr.simulate import simulate_pcle

    variants = {
        "exact (2 steps)": {"noise": None},
        "noise-aware, estimated noise (default)": {},
        "noise-aware, true noise, tolerance 1": {"true": True, "tolerance": 1.0},
        "noise-aware, true noise, tolerance 1.5": {"true": True, "tolerance": 1.5},
        "noise-aware, true noise, tolerance 2": {"true": True, "tolerance": 2.0},
    }
    base = {"validation": 7000, "test": 9000}[split]
    print(
        f"\nProjection of the TLI image, {split} crops (12 per class, 128 px); cells: mean "
        "ΔPSNR (dB) / ΔSSIM against TLI, [worst crop ΔPSNR]\n"
    )
    print("| class | noise | est./true noise | " + " | ".join(variants) + " |")
    print("|---|---|---|" + "---|" * len(variants))
    for cls in CONTENT_CLASSES:
        crops = class_crops(cls, split, 128, 12)
        for noise in NOISE_LEVELS:
            res: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
            ratio = []
            for j, (_, hr) in enumerate(crops):
                sim = simulate_pcle(hr, noise=noise, seed=base + j)
                m, b, v = sim.mask, sim.bundle, sim.values
                p0 = psnr(sim.lr, hr, mask=m, data_range=(0, 1))
                s0 = ssim(sim.lr, hr, mask=m, data_range=(0, 1))
                ratio.append(estimate_noise(v, b) / noise)
                for name, kw in variants.items():
                    kw = dict(kw)
                    if kw.pop("true", False):
                        kw["noise"] = noise
                    out = project_consistent(sim.lr, b, v, **kw)
                    res[name].append(
                        (
                            psnr(out, hr, mask=m, data_range=(0, 1)) - p0,
                            ssim(out, hr, mask=m, data_range=(0, 1)) - s0,
                        )
                    )
            cells = []
            for name in variants:
                a = np.asarray(res[name])
                cells.append(
                    f"{a[:, 0].mean():+.2f} / {a[:, 1].mean():+.3f} [{a[:, 0].min():+.2f}]"
                )
            print(f"| {cls} | {noise:g} | {np.median(ratio):.2f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
