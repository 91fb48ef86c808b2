"""Benchmark of the fibre-bundle operators (napari_cycsr.fibres) against plain baselines.

Run from the repository root::

    .venv/bin/python benchmarks/bench_fibres.py            # full run
    .venv/bin/python benchmarks/bench_fibres.py --quick    # fewer repeats

Prints, side by side and measured in the same run:

* TLI of a 512x512 frame from ~28,000 fibres (ms per frame): ``FibreBundle.reconstruct``
  (one sparse mat-vec) vs ``scipy.interpolate.LinearNDInterpolator`` on the same
  triangulation and values;
* stack reconstruction throughput (frames/s, 100 frames);
* build times of the label map (Voronoi cells + FOV) and of the TLI matrix;
* ``sample`` (inverse TLI) per frame;
* ``vectorize`` of a batch of 54 64x64 patches (682-fibre lattice) vs a naive loop over cells;
* core detection on a real 1280x960 frame when the PyFibreBundle data are present.

All figures are medians of several repeats. Wall-clock times depend on the machine and its
load; report them with the command that produced them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.interpolate import LinearNDInterpolator

from napari_cycsr.fibres import FibreBundle
from napari_cycsr.simulate import DEFAULT_SPACING, hexagonal_lattice

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pyfibrebundle"


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def naive_cell_means(image: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Reference: one boolean mask per cell."""
    return np.array([image[labels == k].mean() for k in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    rep = 5 if args.quick else 15
    rows: list[tuple[str, str, str, str]] = []

    # ---- a 512x512 frame from ~28,000 fibres (full field)
    shape = (512, 512)
    spacing = float(np.sqrt(shape[0] * shape[1] / 28000 / (np.sqrt(3) / 2)))
    centres = hexagonal_lattice(shape, spacing, jitter=0.1, fov="full", seed=0)
    rng = np.random.default_rng(0)
    values = rng.random(len(centres)).astype(np.float32)

    def build_labels() -> None:
        _ = FibreBundle(centres, shape).labels

    t_labels = median_time(build_labels, max(3, rep // 3))

    def build_tli() -> None:
        _ = FibreBundle(centres, shape).tli_matrix

    t_tli_build = median_time(build_tli, max(3, rep // 3))

    bundle = FibreBundle(centres, shape)
    bundle.reconstruct(values)  # build the operator once
    t_ours = median_time(lambda: bundle.reconstruct(values), rep * 10)

    tri = bundle.delaunay
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    grid = (yy, xx)

    def scipy_frame() -> np.ndarray:
        return LinearNDInterpolator(tri, values, fill_value=0.0)(grid)

    ref = scipy_frame()
    ours = bundle.reconstruct(values)
    max_diff = float(np.abs(ref - ours).max())
    t_scipy = median_time(scipy_frame, max(3, rep // 3))
    rows.append(
        (
            f"TLI 512x512 from {len(centres)} fibres",
            f"{t_ours * 1e3:.2f} ms/frame",
            f"LinearNDInterpolator {t_scipy * 1e3:.1f} ms/frame",
            f"x{t_scipy / t_ours:.0f} (max |diff| {max_diff:.1e})",
        )
    )

    stack = rng.random((100, len(centres))).astype(np.float32)
    t_stack = median_time(lambda: bundle.reconstruct(stack), max(3, rep // 3))
    rows.append(
        (
            "TLI stack, 100 frames",
            f"{100 / t_stack:.0f} frames/s",
            f"LinearNDInterpolator {1 / t_scipy:.0f} frames/s",
            f"x{t_scipy * 100 / t_stack:.0f}",
        )
    )
    rows.append(("label map build (Voronoi + FOV)", f"{t_labels * 1e3:.0f} ms", "-", "-"))
    rows.append(("TLI matrix build (incl. Delaunay)", f"{t_tli_build * 1e3:.0f} ms", "-", "-"))

    frame = bundle.reconstruct(values)
    t_first_sample = median_time(lambda: FibreBundle(centres, shape).sample(frame), 1)
    t_sample = median_time(lambda: bundle.sample(frame), rep)
    err = float(np.abs(bundle.sample(frame) - values).max())
    t_bilinear = median_time(lambda: bundle.sample(frame, method="bilinear"), rep)
    err_bilinear = float(np.abs(bundle.sample(frame, method="bilinear") - values).max())
    rows.append(
        (
            "sample (inverse TLI) per frame",
            f"{t_sample * 1e3:.1f} ms (first call {t_first_sample * 1e3:.0f} ms)",
            f"bilinear {t_bilinear * 1e3:.1f} ms",
            f"max |sample(reconstruct(v)) - v|: {err:.1e} (bilinear {err_bilinear:.2f})",
        )
    )

    # ---- vectorize: 54 patches of 64x64 with the default (paper) fibre density
    pbundle = FibreBundle(
        hexagonal_lattice((64, 64), DEFAULT_SPACING, fov="full", seed=1), (64, 64)
    )
    patches = rng.random((54, 64, 64)).astype(np.float32)
    pbundle.vectorize(patches)
    t_vec = median_time(lambda: pbundle.vectorize(patches), rep * 4)
    labels = pbundle.labels

    def naive() -> list[np.ndarray]:
        return [naive_cell_means(p, labels, pbundle.n_fibres) for p in patches]

    t_naive = median_time(naive, max(3, rep // 3))
    same = np.allclose(np.array(naive()), pbundle.vectorize(patches), rtol=1e-5)
    rows.append(
        (
            f"vectorize 54 x 64x64 ({pbundle.n_fibres} fibres)",
            f"{t_vec * 1e3:.2f} ms",
            f"per-cell loop {t_naive * 1e3:.0f} ms",
            f"x{t_naive / t_vec:.0f} (same result: {same})",
        )
    )

    # ---- detection on a real frame
    if (DATA / "usaf1_background.tif").is_file():
        from PIL import Image

        with Image.open(DATA / "usaf1.tif") as im:
            raw = np.asarray(im).copy()
        with Image.open(DATA / "usaf1_background.tif") as im:
            bg = np.asarray(im).copy()
        found: list[FibreBundle] = []
        t_det = median_time(lambda: found.append(FibreBundle.detect(raw, background=bg)), 3)
        fb = found[-1]
        t_lab = median_time(lambda: FibreBundle(fb.centres, fb.shape).labels, 3)
        rows.append(
            (
                "detect usaf1 (1280x960, with background)",
                f"{t_det:.2f} s",
                f"{fb.n_fibres} cores, spacing {fb.spacing:.2f} px",
                f"labels of that bundle {t_lab:.2f} s",
            )
        )

    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("operation", "napari_cycsr", "baseline", "ratio / note")
    widths = [max(w, len(h)) for w, h in zip(widths, header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"\n(medians of repeats; --quick={args.quick}; numpy {np.__version__})")
    if DATA.is_dir():
        detection_table()


def fraction_on_maxima(frame: np.ndarray, centres: np.ndarray, sigma: float) -> float:
    """Share of centres within 1 px of a 3x3 local maximum of the smoothed frame."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    smooth = ndimage.gaussian_filter(frame.astype(float), sigma)
    maxima = np.argwhere(ndimage.maximum_filter(smooth, size=3) == smooth)
    d, _ = cKDTree(maxima).query(centres)
    return float((d <= 1.0).mean())


def detection_table() -> None:
    """Core detection on the real PyFibreBundle frames."""
    from PIL import Image

    from napari_cycsr.fibres import bundle_fov, estimate_spacing

    def load(name: str) -> np.ndarray:
        with Image.open(DATA / name) as im:
            return np.asarray(im).copy()

    cases = [
        ("usaf1.tif", "usaf1_background.tif"),
        ("tissue_paper.tif", "tissue_paper_back.tif"),
        ("usaf1.tif", None),
        ("tissue_paper.tif", None),
        ("bundle1.tif", None),
        ("raw_example_calib.tif", None),
    ]
    print("\nCore detection on the real frames (FibreBundle.detect)")
    header = (
        "frame",
        "background",
        "cores",
        "NN spacing",
        "FFT spacing",
        "cores/(FOV/hex cell)",
        "on maxima (det. frame)",
        "on maxima (raw)",
        "time",
    )
    print(" | ".join(header))
    for raw_name, bg_name in cases:
        raw = load(raw_name)
        bg = load(bg_name) if bg_name else None
        frame = raw if bg is None else bg
        t0 = time.perf_counter()
        fb = FibreBundle.detect(raw, background=bg)
        dt = time.perf_counter() - t0
        fov = bundle_fov(frame)
        s = estimate_spacing(frame, mask=fov)
        expected = fov.sum() / (np.sqrt(3) / 2 * s**2)
        sigma = max(0.5, 0.15 * s)
        cells = (
            raw_name,
            bg_name or "-",
            str(fb.n_fibres),
            f"{fb.spacing:.2f} px",
            f"{s:.2f} px",
            f"{fb.n_fibres / expected:.3f}",
            f"{fraction_on_maxima(frame, fb.centres, sigma):.4f}",
            f"{fraction_on_maxima(raw, fb.centres, sigma):.4f}",
            f"{dt:.2f} s",
        )
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
