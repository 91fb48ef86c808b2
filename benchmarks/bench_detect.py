"""Core detection on every real frame, against an independent count of visible core maxima.

Run from the repository root (about 2 minutes on 2 cores)::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_detect.py
    PYTHONPATH=src .venv/bin/python benchmarks/bench_detect.py --baseline /path/to/old/src

For every frame of ``../shared/data/pyfibrebundle/`` (and its ``super_res/`` video) it runs
``FibreBundle.detect`` on the frame alone (no background) and counts *visible core maxima*
by a separate, deliberately simple rule that shares no code with the detector:

* the frame smoothed by a Gaussian of 1 px; its 3x3 local maxima;
* kept when the maximum rises above the minimum of its 11x11 window by more than
  max(6 noise s.d., 3 grey levels) (noise s.d. from the median absolute deviation of the
  frame minus its 3x3 median);
* of maxima closer than 2 px only the brightest is kept.

It prints, per frame: cores detected, visible maxima, *recall* (visible maxima with a
detected core within 0.5 nearest-neighbour distances), *precision* (detected cores with a
visible maximum that close), visible maxima lying clearly outside the bundle's field of
view (``fov_mask``; by more than half a spacing), pinholes (FOV holes) and, for the
grey-surround copies (the frame's outside, beyond the convex hull of its visible
maxima, replaced by Gaussian noise of the inside's mean and s.d.), the share of detected
cores outside the bundle. ``--baseline SRC`` runs the same measurement with another source
tree (e.g. the previous release) in a subprocess and prints its figures beside.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pyfibrebundle"


def frames() -> list[str]:
    names = sorted(p.name for p in DATA.glob("*.tif") if "back" not in p.name)
    names += [f"super_res/{i}.tif" for i in range(1, 13)]
    return [n for n in names if (DATA / n).exists()]


def load(name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(DATA / name) as im:
        return np.asarray(im).astype(np.float64)


def visible_maxima(frame: np.ndarray) -> np.ndarray:
    """The independent count: prominent 3x3 maxima of the 1-px-smoothed frame."""
    smooth = ndimage.gaussian_filter(frame, 1.0)
    noise = 1.4826 * np.median(np.abs(frame - ndimage.median_filter(frame, 3)))
    prominence = smooth - ndimage.minimum_filter(smooth, 11)
    peak = (smooth == ndimage.maximum_filter(smooth, 3)) & (prominence > max(6 * noise, 3.0))
    pts = np.argwhere(peak).astype(np.float64)
    heights = smooth[peak]
    order = np.argsort(-heights)
    pts = pts[order]
    keep = np.ones(len(pts), bool)
    for a, b in sorted(cKDTree(pts).query_pairs(2.0)):
        if keep[a] and keep[b]:
            keep[max(a, b)] = False
    return pts[keep]


def grey_surround(frame: np.ndarray, maxima: np.ndarray, seed: int = 0) -> tuple:
    from scipy.spatial import ConvexHull
    from skimage.draw import polygon

    hull = ConvexHull(maxima)
    disc = np.zeros(frame.shape, bool)
    rr, cc = polygon(maxima[hull.vertices, 0], maxima[hull.vertices, 1], frame.shape)
    disc[rr, cc] = True
    rng = np.random.default_rng(seed)
    inside = frame[disc]
    noise = rng.normal(inside.mean(), inside.std(), frame.shape)
    return np.where(disc, frame, noise), disc


def measure(name: str, grey: bool) -> dict:
    from napari_cycsr.fibres import FibreBundle

    frame = load(name)
    maxima = visible_maxima(frame)
    disc = None
    if grey:
        frame, disc = grey_surround(frame, maxima)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            bundle = FibreBundle.detect(frame)
        except ValueError as error:
            return {"frame": name, "grey": grey, "error": str(error)[:80]}
    seconds = time.perf_counter() - t0
    nn = bundle.spacing
    d_vis, _ = cKDTree(bundle.centres).query(maxima)
    d_det, _ = cKDTree(maxima).query(bundle.centres)
    fov = bundle.fov_mask
    mi = np.clip(np.rint(maxima).astype(int), 0, np.array(frame.shape) - 1)
    holes = ndimage.binary_fill_holes(fov) & ~fov
    beyond = ndimage.distance_transform_edt(~fov)
    row = {
        "frame": name,
        "grey": grey,
        "cores": int(bundle.n_fibres),
        "visible": int(len(maxima)),
        "recall": float(np.mean(d_vis <= 0.5 * nn)),
        "precision": float(np.mean(d_det <= 0.5 * nn)),
        "visible_outside_fov": int((beyond[mi[:, 0], mi[:, 1]] > 0.5 * nn).sum()),
        "pinhole_px": int(holes.sum()),
        "seconds": seconds,
        "warnings": len(caught),
    }
    if disc is not None:
        ci = np.clip(np.rint(bundle.centres).astype(int), 0, np.array(frame.shape) - 1)
        far = ndimage.distance_transform_edt(~disc)[ci[:, 0], ci[:, 1]] > 0.5 * nn
        row["outside_bundle"] = float(far.mean())
    return row


def run_all() -> list[dict]:
    rows = [measure(n, False) for n in frames()]
    rows += [measure(n, True) for n in ("usaf1.tif", "tissue_paper.tif", "bundle1.tif")]
    return rows


def fmt(row: dict | None) -> str:
    if row is None:
        return "-"
    if "error" in row:
        return f"refused: {row['error']}"
    text = (
        f"{row['cores']:6d} cores, recall {row['recall']:.3f}, precision {row['precision']:.3f}"
        f", {row['visible_outside_fov']:4d} visible outside FOV, {row['pinhole_px']:4d} px"
        f" pinholes"
    )
    if "outside_bundle" in row:
        text += f", {100 * row['outside_bundle']:.1f} % cores outside the bundle"
    return text + f" ({row['seconds']:.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="another source tree to measure beside (its src/)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not DATA.exists():
        print(f"no data at {DATA}: nothing to measure")
        return
    rows = run_all()
    if args.json:
        print(json.dumps(rows))
        return
    base = None
    if args.baseline:
        env = {**os.environ, "PYTHONPATH": args.baseline}
        out = subprocess.run(
            [sys.executable, __file__, "--json"], env=env, capture_output=True, text=True
        )
        base = json.loads(out.stdout.strip().splitlines()[-1])
    print("frame | visible maxima | this tree" + (" | baseline" if base else ""))
    for i, row in enumerate(rows):
        label = row["frame"] + (" (grey surround)" if row["grey"] else "")
        visible = row.get("visible", "-")
        line = f"{label} | {visible} | {fmt(row)}"
        if base:
            line += f" | {fmt(base[i])}"
        print(line)


if __name__ == "__main__":
    main()
