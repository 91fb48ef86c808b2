"""Consistency projection of the TLI image, against TLI and Wiener deconvolution.

Simulates pCLE (``simulate_pcle``, seed 0) of 256 x 256 crops of scikit-image pictures, then
scores the TLI image, Wiener deconvolution (balance estimated per frame) and the TLI image
projected onto the measured fibre values with 1, 2, 3, 5 and 10 back-projection steps
(:func:`napari_cycsr.consistency.project_consistent`): PSNR and SSIM against the true image,
GCF (true image in the last column), cycle error, and the median time of one projection over
``--repeats`` runs. Prints Markdown tables (used in ``docs/consistency.md``)::

    python benchmarks/bench_consistency.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

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
    args = parser.parse_args(argv)

    for name, y0, x0 in CROPS:
        sim = simulate_pcle(_crop(name, y0, x0), seed=0)
        b, m, v, hr = sim.bundle, sim.bundle.fov_mask, sim.values, sim.hr
        rows = [("TLI", sim.lr, "")]
        rows.append(("Wiener", wiener(sim.lr, b.spacing, mask=m), ""))
        for k in STEPS:
            times = []
            for _ in range(max(1, args.repeats)):
                t0 = time.perf_counter()
                out = project_consistent(sim.lr, b, v, iterations=k)
                times.append(time.perf_counter() - t0)
            rows.append((f"TLI + projection, {k} step(s)", out, f"{np.median(times) * 1e3:.1f}"))
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


if __name__ == "__main__":
    raise SystemExit(main())
