"""Evidence for the video module: registration, fusion (HR^), the real USAF video, speed.

Everything a table in docs/video.md and docs/benchmarks.md ("Video") shows comes from one run
of this script; baselines are measured in the same run.

Parts (``--parts``, default all):

``registration``
    Simulated videos (``simulate_pcle_video``, 16 frames, random walk) of six held-out
    images in three content classes, at three noise levels and three step sizes:
    the error of ``register`` against the true shifts (median and 95th percentile, px).
``fusion``
    The same kind of videos: PSNR / SSIM against the true reference frame of the TLI frame,
    pooled interpolation *with the true shifts*, the shift-and-add mean, and ``fuse`` with
    the *estimated* shifts (and the true ones), for K = 1, 2, 4, 8, 16 frames.
``real``
    The real 12-frame USAF video (PyFibreBundle test data): Michelson bar contrast of named
    USAF elements in frame 1's TLI, in HR^ from frames 1-12 and from 2-12 (leave-one-out),
    side by side with PyFibreBundle's multi-frame ``SuperRes`` on the same frames, run in
    its own venv (``bench_peers.py`` builds it), and the time per fused frame.
``speed``
    Fusing 8 frames of about 30,000 cores on a 576 x 576 grid, and registration frame pairs
    per second at 576 x 576.

Development used crops of camera, grass, moon and hubble_deep_field[:220, :220]; the
simulated rows here use other images (brick, gravel, cell, retina, another part of
hubble_deep_field, immunohistochemistry), so nothing was tuned on them.

Usage::

    flock /work/cpu.lock python benchmarks/bench_video.py            # all, docs updated
    python benchmarks/bench_video.py --quick --no-docs                # a short smoke run
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, SHARED_DATA, markdown_table, update_markdown, write_json  # noqa: E402

COMMAND = "python benchmarks/bench_video.py"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "video.json"

#: content class -> (image name, crop rows, crop cols); none of them used in development
CONTENT: dict[str, list[tuple[str, tuple[int, int], tuple[int, int]]]] = {
    "texture": [("gravel", (100, 332), (100, 332)), ("brick", (100, 332), (100, 332))],
    "smooth": [("cell", (200, 432), (150, 382)), ("retina", (500, 732), (500, 732))],
    "sparse bright": [
        ("hubble_deep_field", (400, 632), (500, 732)),
        ("immunohistochemistry", (100, 332), (100, 332)),
    ],
}
FRAME = (200, 200)


def grey(name: str) -> np.ndarray:
    """A scikit-image sample as grey float in [0, 1] (colour -> Rec. 709 luminance)."""
    from skimage import color, data

    image = getattr(data, name)()
    if image.ndim == 3:
        return color.rgb2gray(image[..., :3]).astype(np.float32)
    return (image / 255.0).astype(np.float32)


def scenes(quick: bool) -> list[tuple[str, str, np.ndarray]]:
    out = []
    for cls, items in CONTENT.items():
        for name, (r0, r1), (c0, c1) in items[: 1 if quick else None]:
            out.append((cls, name, grey(name)[r0:r1, c0:c1]))
    return out


def _median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ---------------------------------------------------------------------- registration


def bench_registration(quick: bool) -> dict[str, Any]:
    from napari_cycsr.simulate import simulate_pcle_video
    from napari_cycsr.video import register

    noises = (0.01, 0.03) if quick else (0.01, 0.03, 0.05)
    steps = (0.3, 3.0) if quick else (0.3, 1.0, 3.0)
    n = 8 if quick else 16
    rows = []
    for noise in noises:
        for step in steps:
            errs: dict[str, list[float]] = {}
            bad = 0
            for cls, _name, scene in scenes(quick):
                vid = simulate_pcle_video(
                    scene, n, shape=None if step > 1.5 else FRAME, step=step, noise=noise,
                    seed=7,
                )  # fmt: skip
                reg = register(vid.lr, vid.bundle)
                e = np.hypot(*(reg.shifts - vid.shifts).T)[1:]
                bad += int((~reg.good).sum())
                errs.setdefault(cls, []).extend(e.tolist())
                errs.setdefault("all", []).extend(e.tolist())
            row = {"noise": noise, "step": step, "frames_left_out": bad}
            for key, e in errs.items():
                row[key] = {
                    "median": float(np.median(e)),
                    "p95": float(np.percentile(e, 95)),
                    "n": len(e),
                }
            rows.append(row)
            print(f"registration noise {noise} step {step}: median {row['all']['median']:.3f} "
                  f"p95 {row['all']['p95']:.3f} px", flush=True)  # fmt: skip
    return {"frames_per_video": n, "rows": rows}


# ---------------------------------------------------------------------- fusion


def bench_fusion(quick: bool) -> dict[str, Any]:
    from scipy import ndimage

    from napari_cycsr.metrics import psnr, ssim
    from napari_cycsr.simulate import simulate_pcle_video
    from napari_cycsr.video import fuse, pooled_interpolation, register

    noises = (0.01,) if quick else (0.01, 0.03)
    ks = (1, 2, 4, 8) if quick else (1, 2, 4, 8, 16)
    rows = []
    for noise in noises:
        for cls, name, scene in scenes(quick):
            vid = simulate_pcle_video(scene, max(ks), shape=FRAME, step=0.7, noise=noise, seed=3)
            m = ndimage.binary_erosion(vid.bundle.fov_mask, iterations=6)
            truth = vid.hr

            def score(x: np.ndarray, truth=truth, m=m) -> tuple[float, float]:
                return (
                    psnr(x, truth, mask=m, data_range=1.0),
                    ssim(x, truth, mask=m, data_range=1.0),
                )

            reg = register(vid.lr, vid.bundle)
            tli = score(vid.lr[0])
            for k in ks:
                used = list(range(k))
                t0 = time.perf_counter()
                est, info = fuse(vid.values, vid.bundle, reg, frames_used=used, return_info=True)
                t_fuse = time.perf_counter() - t0
                row = {
                    "class": cls, "image": name, "noise": noise, "K": k,
                    "tli": tli,
                    "pooled_true": score(
                        pooled_interpolation(vid.values, vid.bundle, vid.shifts, frames_used=used)
                    ),
                    "mean_est": score(
                        fuse(vid.values, vid.bundle, reg, frames_used=used, method="mean")
                    ),
                    "fuse_est": score(est),
                    "fuse_true": score(fuse(vid.values, vid.bundle, vid.shifts, frames_used=used)),
                    "iterations": info.iterations,
                    "fuse_s": t_fuse,
                }  # fmt: skip
                rows.append(row)
                print(f"fusion {cls:13s} {name:20s} noise {noise} K {k:2d}: tli {tli[0]:.2f} "
                      f"pooled(true) {row['pooled_true'][0]:.2f} fuse(est) "
                      f"{row['fuse_est'][0]:.2f} dB", flush=True)  # fmt: skip
    return {"rows": rows}


# ---------------------------------------------------------------------- fibres, gains, rules


def bench_fibres(quick: bool) -> dict[str, Any]:
    """Raw frames with / without a background frame, the stopping rules, confidence of bad
    frames, the spacing and lattice of reconstructed video, gains from the video."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    from napari_cycsr.metrics import psnr
    from napari_cycsr.simulate import simulate_pcle_video
    from napari_cycsr.video import (
        estimate_gains,
        estimate_lattice,
        estimate_video_spacing,
        fuse,
        neighbour_gains,
        register,
    )

    out: dict[str, Any] = {"raw": [], "stopping": [], "bad_frames": [], "lattice": [], "gains": []}
    items = scenes(quick)
    n = 8 if quick else 12
    for cls, name, scene in items:
        big = np.pad(scene, 40, mode="reflect")  # room for spacing-5 cores and 1.5 px steps
        vid = simulate_pcle_video(
            big, n, shape=(big.shape[0] - 32, big.shape[1] - 32), spacing=5.0, raw=True,
            noise=0.01, gain_sd=0.1, step=1.5, seed=5,
        )  # fmt: skip

        def err(reg: Any, vid: Any = vid) -> float:
            return float(np.median(np.hypot(*(reg.shifts - vid.shifts).T)[1:]))

        out["raw"].append({
            "class": cls, "image": name,
            "with_background": err(register(vid.raw, vid.bundle, background=vid.background)),
            "without_background": err(register(vid.raw, vid.bundle)),
        })  # fmt: skip
    for noise in (0.01, 0.03):
        for cls, name, scene in items:
            vid = simulate_pcle_video(scene, 8, shape=FRAME, step=0.7, noise=noise, seed=3)
            m = ndimage.binary_erosion(vid.bundle.fov_mask, iterations=6)
            reg = register(vid.lr, vid.bundle)
            row = {"class": cls, "image": name, "noise": noise}
            for label, kw in (("holdout", {}), ("true noise", {"noise": noise}),
                              ("1.5 x true noise", {"noise": 1.5 * noise})):  # fmt: skip
                x, info = fuse(vid.values, vid.bundle, reg, return_info=True, **kw)
                row[label] = (psnr(x, vid.hr, mask=m, data_range=1.0), info.iterations)
            out["stopping"].append(row)
    # confidence of a blank and a defocused frame
    for cls, name, scene in items:
        vid = simulate_pcle_video(scene, 6, shape=FRAME, step=0.7, noise=0.01, seed=4)
        lr = vid.lr.copy()
        rng = np.random.default_rng(0)
        blank = 0.5 + 0.01 * rng.standard_normal(vid.bundle.n_fibres)
        lr[2] = vid.bundle.reconstruct(blank)
        blur = ndimage.gaussian_filter(vid.frames[4], 2 * vid.bundle.spacing)
        lr[4] = vid.bundle.reconstruct(vid.bundle.vectorize(blur))
        reg = register(lr, vid.bundle)
        good = [t for t in range(6) if t not in (0, 2, 4)]
        out["bad_frames"].append({
            "class": cls, "image": name, "blank": float(reg.confidence[2]),
            "defocused": float(reg.confidence[4]),
            "good_min": float(reg.confidence[good].min()),
        })  # fmt: skip
    for spacing in (3.0, 4.0, 6.0):
        for cls, name, scene in items[: 1 if quick else None]:
            big = np.pad(scene, 40, mode="reflect")
            vid = simulate_pcle_video(
                big, 16, shape=(big.shape[0] - 32, big.shape[1] - 32), spacing=spacing,
                step=1.5, noise=0.01, seed=2,
            )  # fmt: skip
            s = estimate_video_spacing(vid.lr)
            row = {"class": cls, "image": name, "spacing": spacing, "estimated": s}
            try:
                est = estimate_lattice(vid.lr)
                d, _ = cKDTree(vid.bundle.centres).query(est.centres)
                d2, _ = cKDTree(est.centres).query(vid.bundle.centres)
                row.update(
                    found=est.n_fibres,
                    true=vid.bundle.n_fibres,
                    precision=float((d < 0.5).mean()),
                    recall=float((d2 < 0.5).mean()),
                )
            except ValueError as exc:
                row["error"] = str(exc)
            out["lattice"].append(row)
    for cls, name, scene in items:
        vid = simulate_pcle_video(scene, 12, shape=FRAME, step=1.5, gain_sd=0.15, noise=0.01,
                                  seed=4)  # fmt: skip
        m = ndimage.binary_erosion(vid.bundle.fov_mask, iterations=6)
        truth = vid.gains / np.median(vid.gains)
        reg = register(vid.lr, vid.bundle)
        g0 = neighbour_gains(vid.values, vid.bundle)
        g = estimate_gains(vid.values, vid.bundle, reg)
        score = {
            k: psnr(fuse(vid.values, vid.bundle, reg, gains=v), vid.hr, mask=m, data_range=1.0)
            for k, v in (("none", None), ("estimated", g), ("true", vid.gains))
        }
        out["gains"].append({
            "class": cls, "image": name, "gain_sd": float(np.std(truth)),
            "error_neighbours": float(np.std(truth / g0)), "error_fused": float(np.std(truth / g)),
            "psnr": score,
        })  # fmt: skip
    return out


def report_fibres(res: dict[str, Any]) -> str:
    parts = ["**Raw frames (cores 5 px apart, gains sd 0.1, 1.5 px steps): median registration "
             "error (px) with and without the background frame**", ""]  # fmt: skip
    parts.append(markdown_table(
        ["class", "image", "with background", "without"],
        [[r["class"], r["image"], f"{r['with_background']:.3f}", f"{r['without_background']:.3f}"]
         for r in res["raw"]],
    ))  # fmt: skip
    parts += ["", "**Stopping rules** (K = 8, estimated shifts): PSNR dB @ CG iterations", ""]
    parts.append(markdown_table(
        ["class", "image", "noise sd", "hold-out (default)", "discrepancy, true noise",
         "discrepancy, 1.5 x true noise"],
        [[r["class"], r["image"], r["noise"]] + [f"{r[k][0]:.2f} @ {r[k][1]}" for k in
         ("holdout", "true noise", "1.5 x true noise")] for r in res["stopping"]],
    ))  # fmt: skip
    parts += ["", "**Confidence of bad frames** (a blank frame, a frame defocused by a Gaussian "
              "of two core spacings; threshold 0.5)", ""]  # fmt: skip
    parts.append(markdown_table(
        ["class", "image", "blank", "defocused", "lowest good frame"],
        [[r["class"], r["image"], f"{r['blank']:.2f}", f"{r['defocused']:.2f}",
          f"{r['good_min']:.2f}"] for r in res["bad_frames"]],
    ))  # fmt: skip
    parts += ["", "**Fibres from reconstructed (TLI) video alone** (16 frames): spacing of the "
              "vertex map, and cores found within 0.5 px", ""]  # fmt: skip
    parts.append(markdown_table(
        ["image", "true spacing px", "estimated px", "cores found / true", "found on a true core",
         "true cores found"],
        [[r["image"], r["spacing"], f"{r['estimated']:.2f}",
          f"{r.get('found', '-')} / {r.get('true', '-')}",
          f"{r['precision']:.1%}" if "precision" in r else r.get("error", ""),
          f"{r['recall']:.1%}" if "recall" in r else ""] for r in res["lattice"]],
    ))  # fmt: skip
    parts += ["", "**Gains from the video** (12 frames, gain sd 0.15): remaining gain error (sd "
              "of true / estimated) and the fused PSNR (dB)", ""]  # fmt: skip
    parts.append(markdown_table(
        ["class", "image", "gain sd", "neighbours only", "fused (estimate_gains)",
         "PSNR no correction", "estimated gains", "true gains"],
        [[r["class"], r["image"], f"{r['gain_sd']:.3f}", f"{r['error_neighbours']:.3f}",
          f"{r['error_fused']:.3f}", f"{r['psnr']['none']:.2f}", f"{r['psnr']['estimated']:.2f}",
          f"{r['psnr']['true']:.2f}"] for r in res["gains"]],
    ))  # fmt: skip
    return "\n".join(parts)


# ---------------------------------------------------------------------- real video

#: USAF 1951 bar triplets of the real video: (group, element, bars) -> a box (rows, cols) of
#: frame 1 holding that triplet. The target is mirrored and turned by about 15 degrees in the
#: video; "v" are the bars that run roughly along y, "h" those along x. Boxes were placed by
#: eye on a fused image; the bars' direction and positions inside are found automatically.
USAF_ROIS: dict[str, tuple[int, int, int, int]] = {
    "G6E2 v": (550, 622, 688, 762), "G6E2 h": (538, 602, 762, 828),
    "G6E3 v": (460, 528, 686, 752), "G6E3 h": (452, 508, 752, 812),
    "G6E4 v": (385, 445, 682, 742), "G6E4 h": (375, 432, 742, 798),
    "G6E5 v": (315, 370, 678, 735), "G6E5 h": (306, 358, 732, 790),
    "G6E6 v": (255, 305, 672, 725), "G6E6 h": (245, 292, 725, 772),
    "G7E1 h": (620, 662, 488, 535), "G7E1 v": (612, 658, 532, 575),
    "G7E2 h": (574, 612, 480, 518), "G7E2 v": (566, 606, 516, 552),
    "G7E3 h": (530, 564, 472, 507), "G7E3 v": (524, 561, 503, 537),
    "G7E4 h": (492, 523, 463, 494), "G7E4 v": (486, 518, 493, 523),
    "G7E5 h": (459, 488, 458, 484), "G7E5 v": (455, 483, 482, 511),
    "G7E6 h": (430, 457, 450, 478), "G7E6 v": (428, 453, 476, 500),
}  # fmt: skip


def refine(profile: np.ndarray, bars: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each bar moved to the profile's minimum, each gap to its maximum, within a quarter
    of the bar period of the given positions (each image gets its own best reading)."""
    reach = max(1, int(round(0.25 * (bars[2] - bars[0]) / 2)))

    def best(pos: float, sign: float) -> float:
        lo = max(0, int(pos) - reach)
        hi = min(len(profile), int(pos) + reach + 1)
        return float(lo + np.argmin(sign * profile[lo:hi]))

    return (
        np.array([best(b, 1.0) for b in bars]),
        np.array([best(g, -1.0) for g in gaps]),
    )


def resolved(profile: np.ndarray, bars: np.ndarray, gaps: np.ndarray) -> bool:
    """Three bars told apart: each gap brighter than both bars beside it (by 1 % of the
    profile's mean)."""
    x = np.arange(len(profile))
    b = np.interp(bars, x, profile)
    g = np.interp(gaps, x, profile)
    margin = 0.01 * float(np.mean(profile))
    return bool(g[0] > max(b[0], b[1]) + margin and g[1] > max(b[1], b[2]) + margin)


def michelson(profile: np.ndarray, bars: np.ndarray, gaps: np.ndarray) -> float:
    """Michelson contrast of a bar triplet: (gaps - bars) / (gaps + bars) at given positions.

    ``bars`` are the three positions (profile samples, may be fractional) of the dark bars,
    ``gaps`` the two bright gaps between them; values are read by linear interpolation.
    Negative when the bars read brighter than the gaps (an unresolved or phase-reversed
    triplet).

    Examples
    --------
    >>> p = np.array([1, 0, 1, 0, 1, 0, 1], float)
    >>> round(michelson(p, np.array([1, 3, 5]), np.array([2, 4])), 3)
    1.0
    """
    x = np.arange(len(profile))
    b = float(np.interp(bars, x, profile).mean())
    g = float(np.interp(gaps, x, profile).mean())
    return (g - b) / (g + b) if g + b > 0 else float("nan")


STEP = 0.25  # profile sample spacing (px)


def triplet_geometry(image: np.ndarray, box: tuple[int, int, int, int]) -> dict[str, Any]:
    """Direction and bar positions of the bar triplet in ``box`` of a well-resolved image.

    The direction across the bars is the dominant gradient direction in the box (structure
    tensor); the profile through the box centre along it, averaged over the middle half of
    the bars' length, has its three deepest minima at the bars and its two highest maxima
    between them at the gaps.
    """
    from scipy import ndimage

    y0, y1, x0, x1 = box
    patch = image[y0:y1, x0:x1].astype(np.float64)
    gy = ndimage.sobel(patch, 0)
    gx = ndimage.sobel(patch, 1)
    j = np.array([[np.sum(gy * gy), np.sum(gy * gx)], [np.sum(gy * gx), np.sum(gx * gx)]])
    _, vecs = np.linalg.eigh(j)
    across = vecs[:, -1]  # (dy, dx) unit vector across the bars
    along = np.array([-across[1], across[0]])
    centre = np.array([(y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0])
    half = 0.5 * np.hypot(y1 - y0, x1 - x0)
    width = 0.2 * min(y1 - y0, x1 - x0)
    geo = {"centre": centre, "across": across, "along": along, "half": half, "width": width}
    prof = profile(image, geo)
    from scipy.signal import find_peaks

    dips, props = find_peaks(-prof, prominence=0.02 * (prof.max() - prof.min() + 1e-12))
    if len(dips) < 3:
        raise ValueError(f"fewer than three bars found in {box}")
    # the three consecutive minima of the deepest, most even triplet
    best = None
    for i in range(len(dips) - 2):
        trio = dips[i : i + 3]
        d1, d2 = trio[1] - trio[0], trio[2] - trio[1]
        if min(d1, d2) / max(d1, d2) < 0.7:
            continue
        depth = -prof[trio].mean()
        if best is None or depth > best[0]:
            best = (depth, trio)
    if best is None:
        raise ValueError(f"no evenly spaced bar triplet in {box}")
    trio = best[1]
    gaps = np.array(
        [
            trio[0] + int(np.argmax(prof[trio[0] : trio[1]])),
            trio[1] + int(np.argmax(prof[trio[1] : trio[2]])),
        ]
    )
    geo["bars"] = trio.astype(float)
    geo["gaps"] = gaps.astype(float)
    geo["period_px"] = float((trio[2] - trio[0]) / 2 * STEP)
    return geo


def profile(image: np.ndarray, geo: dict[str, Any], offset: Any = (0.0, 0.0)) -> np.ndarray:
    """Profile across a triplet (``geo`` from :func:`triplet_geometry`), averaged along the
    bars; ``offset`` moves the geometry into another frame's coordinates."""
    from scipy import ndimage

    s = np.arange(-geo["half"], geo["half"] + 1e-9, STEP)
    t = np.linspace(-geo["width"], geo["width"], 9)
    c = geo["centre"] + np.asarray(offset, float)
    pts = (
        c[:, None, None]
        + geo["across"][:, None, None] * s[None, :, None]
        + geo["along"][:, None, None] * t[None, None, :]
    )
    vals = ndimage.map_coordinates(image.astype(np.float64), pts.reshape(2, -1), order=1)
    return vals.reshape(len(s), len(t)).mean(axis=1)


def _real_data() -> dict[str, Any]:
    from napari_cycsr._imageio import read_image
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.video import read_video

    folder = SHARED_DATA / "super_res"
    raw = read_video(folder)
    bg = read_image(SHARED_DATA / "usaf1_background.tif")
    return {"raw": raw, "background": bg, "bundle": FibreBundle.detect(bg)}


def bench_real(quick: bool, peer_python: Path | None, work: Path, repeats: int) -> dict[str, Any]:
    from napari_cycsr.video import fuse, register

    d = _real_data()
    raw, bg, b = d["raw"], d["background"], d["bundle"]
    t0 = time.perf_counter()
    vals = b.core_values(raw, background=bg)
    t_values = time.perf_counter() - t0
    t0 = time.perf_counter()
    reg = register(raw, b, background=bg)
    t_reg = time.perf_counter() - t0
    images: dict[str, tuple[np.ndarray, Any]] = {"TLI, frame 1": (b.reconstruct(vals[0]), (0, 0))}
    timings: dict[str, float] = {}
    for label, kw in (
        ("HR^ frames 1-12", {}),
        ("HR^ frames 2-12 (leave-one-out)", {"exclude": [0]}),
        ("HR^ 1-12, core aperture 0.35", {"aperture": 0.35}),
        ("HR^ 2-12, core aperture 0.35", {"aperture": 0.35, "exclude": [0]}),
        ("shift-and-add mean 1-12", {"method": "mean"}),
    ):
        t0 = time.perf_counter()
        image, info = fuse(vals, b, reg, return_info=True, **kw)
        timings[label] = time.perf_counter() - t0
        images[label] = (image, (0, 0))
        print(f"real {label}: {timings[label]:.2f} s, {info.iterations} iterations", flush=True)
    peer = None
    if peer_python is not None:
        peer = _superres(peer_python, work, raw, bg, b, reg, repeats)
        for label, item in peer["images"].items():
            images[label] = item
    geos = {k: triplet_geometry(images["HR^ frames 1-12"][0], box) for k, box in USAF_ROIS.items()}
    table: dict[str, dict[str, float]] = {}
    told: dict[str, dict[str, bool]] = {}
    for label, (image, offset) in images.items():
        table[label], told[label] = {}, {}
        for k, g in geos.items():
            prof = profile(image, g, offset)
            bars, gaps = refine(prof, g["bars"], g["gaps"])
            table[label][k] = michelson(prof, bars, gaps)
            told[label][k] = resolved(prof, bars, gaps)
    return {
        "shifts": reg.shifts.tolist(),
        "confidence": reg.confidence.tolist(),
        "n_fibres": b.n_fibres,
        "period_px": {k: g["period_px"] for k, g in geos.items()},
        "michelson": table,
        "resolved": told,
        "times_s": {
            "core values, 12 frames": t_values,
            "registration, 12 frames": t_reg,
            **{f"fuse: {k}": v for k, v in timings.items()},
            **({} if peer is None else peer["times"]),
        },
        "peer_version": None if peer is None else peer["version"],
        "_images": images,
    }


def _superres(
    python: Path, work: Path, raw: np.ndarray, bg: np.ndarray, bundle: Any, reg: Any, repeats: int
) -> dict[str, Any]:
    """PyFibreBundle's SuperRes on frames 1-12 and 2-12 (its own shifts, and ours)."""
    from bench_peers import run_worker

    job = work / "superres"
    job.mkdir(parents=True, exist_ok=True)
    np.save(job / "stack.npy", np.ascontiguousarray(raw))
    np.save(job / "background.npy", np.ascontiguousarray(bg))
    cy, cx = (int(round(v)) for v in bundle.centres.mean(axis=0))
    r = int(min(cy, cx, bg.shape[0] - 1 - cy, bg.shape[1] - 1 - cx))
    grid = {"cy": cy, "cx": cx, "r": r}
    tasks = []
    for name, first in (("all", 0), ("others", 1)):
        rel = reg.shifts[first:] - reg.shifts[first]
        # theirs: the cores of image i are placed at (x, y) + shift in image 0's scene
        theirs = np.stack([-rel[:, 1], -rel[:, 0]], axis=1)
        np.save(job / f"shifts_{name}.npy", theirs)
        for own in (True, False):
            tasks.append({
                "name": f"sr_{name}_{'own' if own else 'ours'}", "kind": "superres",
                "raw": "stack.npy", "background": "background.npy", "first": first,
                "shifts": None if own else f"shifts_{name}.npy", "grid": grid,
                "repeats": repeats,
            })  # fmt: skip
    res = run_worker(python, job, tasks)
    images, times = {}, {}
    labels = {
        "sr_all_own": "PyFibreBundle SuperRes 1-12 (its shifts)",
        "sr_all_ours": "PyFibreBundle SuperRes 1-12 (our shifts)",
        "sr_others_own": "PyFibreBundle SuperRes 2-12 (its shifts)",
        "sr_others_ours": "PyFibreBundle SuperRes 2-12 (our shifts)",
    }
    for key, label in labels.items():
        img = np.load(job / f"{key}_image.npy", allow_pickle=False)
        full = np.full(bg.shape, np.nan)
        full[cy - r : cy + r + 1, cx - r : cx + r + 1] = img
        first = 1 if "others" in key else 0
        images[label] = (np.nan_to_num(full), tuple(reg.shifts[first]))
        t = res["tasks"][key]
        times[f"{label}: calibration"] = t["calib_s"]
        times[f"{label}: reconstruction"] = t["recon_s"]
    return {"images": images, "times": times, "version": res["pyfibrebundle_version"]}


# ---------------------------------------------------------------------- speed


def bench_speed(quick: bool) -> dict[str, Any]:
    from skimage import data, transform

    from napari_cycsr.simulate import simulate_pcle_video
    from napari_cycsr.video import fuse, register
    from napari_cycsr.video._register import _PairRegistrar, _SignalMaker, _spacing_of

    repeats = 3 if quick else 7
    scene = transform.resize(data.astronaut()[..., 1].astype(np.float32) / 255, (640, 640))
    vid = simulate_pcle_video(
        scene, 8, shape=(576, 576), spacing=3.55, fov="full", step=0.7, noise=0.01, seed=1
    )
    b = vid.bundle
    out: dict[str, Any] = {"n_fibres": b.n_fibres, "grid": [576, 576], "frames": 8}
    fuse(vid.values, b, vid.shifts, method="mean")  # builds the bundle's caches once
    for label, kw in (
        ("solve, hold-out stop (default)", {}),
        ("solve, known noise (discrepancy)", {"noise": 0.01}),
        ("shift-and-add mean", {"method": "mean"}),
    ):
        info = fuse(vid.values, b, vid.shifts, return_info=True, **kw)[1]
        t = _median_time(lambda kw=kw: fuse(vid.values, b, vid.shifts, **kw), repeats)
        out[label] = {"seconds": t, "iterations": info.iterations}
        print(f"speed fuse 8 x {b.n_fibres} cores, 576^2, {label}: {t:.3f} s", flush=True)
    # registration: pairs per second once the video's signal maker exists
    # the signal maker register() builds for this video (same band, same spacing rule)
    spacing = _spacing_of(vid.lr, b, None, b.fov_mask)
    maker = _SignalMaker(b.shape, b.fov_mask, spacing, 0.3, b, "reconstructed", None)
    pair = _PairRegistrar(maker)
    anchor = maker.signal(vid.lr[0])

    def pairs() -> None:
        for t in range(1, 8):
            pair.register(anchor, maker.signal(vid.lr[t]), 0.25)

    t_pairs = _median_time(pairs, repeats) / 7
    t_video = _median_time(lambda: register(vid.lr, b), max(1, repeats // 2))
    out["registration"] = {
        "coarse_grid": [maker.ny, maker.nx],
        "pairs_per_s": 1.0 / t_pairs,
        "pair_ms": t_pairs * 1e3,
        "video_8_frames_s": t_video,
    }
    print(f"speed registration 576^2: {1 / t_pairs:.0f} pairs/s; 8-frame video {t_video:.2f} s")
    return out


# ---------------------------------------------------------------------- report


def _db(x: float) -> str:
    return f"{x:.2f}"


def report_registration(res: dict[str, Any]) -> str:
    classes = [c for c in ("texture", "smooth", "sparse bright") if c in res["rows"][0]]
    rows = []
    for r in res["rows"]:
        cells = [r["noise"], r["step"]]
        cells += [f"{r['all']['median']:.3f} / {r['all']['p95']:.3f}"]
        cells += [f"{r[c]['median']:.3f} / {r[c]['p95']:.3f}" for c in classes]
        cells.append(r["frames_left_out"])
        rows.append(cells)
    return markdown_table(
        ["noise sd", "step sd (px)", "all: median / p95 (px)"]
        + [f"{c}: median / p95" for c in classes]
        + ["frames left out"],
        rows,
    )


def report_fusion(res: dict[str, Any]) -> tuple[str, str]:
    rows_k = []
    by = {}
    for r in res["rows"]:
        by.setdefault((r["noise"], r["K"]), []).append(r)
    for (noise, k), rs in sorted(by.items()):
        mean = {
            key: (np.mean([x[key][0] for x in rs]), np.mean([x[key][1] for x in rs]))
            for key in ("tli", "pooled_true", "mean_est", "fuse_est", "fuse_true")
        }
        gain = np.array([x["fuse_est"][0] - x["pooled_true"][0] for x in rs])
        rows_k.append(
            [noise, k]
            + [
                f"{mean[key][0]:.2f} / {mean[key][1]:.3f}"
                for key in ("tli", "pooled_true", "mean_est", "fuse_est", "fuse_true")
            ]  # fmt: skip
            + [f"{gain.mean():+.2f} (min {gain.min():+.2f})"]
        )
    table_k = markdown_table(
        ["noise sd", "K frames", "TLI frame 1", "pooled interp. (true shifts)",
         "shift-and-add (est.)", "fuse (est. shifts)", "fuse (true shifts)",
         "fuse(est) - pooled(true), dB"],
        rows_k,
    )  # fmt: skip
    rows_c = []
    for r in res["rows"]:
        if r["K"] != 8:
            continue
        rows_c.append(
            [r["class"], r["image"], r["noise"], _db(r["tli"][0]), _db(r["pooled_true"][0]),
             _db(r["fuse_est"][0]), f"{r['fuse_est'][0] - r['pooled_true'][0]:+.2f}",
             f"{r['fuse_est'][1] - r['tli'][1]:+.3f}", r["iterations"]]
        )  # fmt: skip
    table_c = markdown_table(
        ["class", "image", "noise sd", "TLI dB", "pooled (true) dB", "fuse (est.) dB",
         "fuse - pooled dB", "SSIM fuse - TLI", "CG iterations"],
        rows_c,
    )  # fmt: skip
    return table_k, table_c


def report_real(res: dict[str, Any]) -> tuple[str, str]:
    labels = list(res["michelson"])
    keys = list(USAF_ROIS)
    rows = []
    for k in keys:
        rows.append([k, f"{res['period_px'][k]:.1f}"] + [
            f"{res['michelson'][lab][k]:.3f}" for lab in labels
        ])  # fmt: skip

    def told(lab: str, k: str) -> bool:  # bars in order, and at least 10 % contrast
        return bool(res["resolved"][lab][k]) and res["michelson"][lab][k] >= 0.1

    rows.append(
        ["triplets resolved", ""]
        + [f"{sum(told(lab, k) for k in keys)} / {len(keys)}" for lab in labels]
    )
    table = markdown_table(["element", "bar period px"] + labels, rows)
    trows = [[k, f"{v:.2f}"] for k, v in res["times_s"].items()]
    return table, markdown_table(["step", "seconds"], trows)


def report_speed(res: dict[str, Any]) -> str:
    rows = []
    for k, v in res.items():
        if isinstance(v, dict) and "seconds" in v:
            rows.append([f"fuse 8 frames, {k}", f"{v['seconds']:.3f} s", v["iterations"],
                         "<= 0.2 s", "yes" if v["seconds"] <= 0.2 else "no"])  # fmt: skip
    r = res["registration"]
    rows.append(["registration, frame pairs per second", f"{r['pairs_per_s']:.0f}", "",
                 ">= 100", "yes" if r["pairs_per_s"] >= 100 else "no"])  # fmt: skip
    rows.append(["registration, whole 8-frame video (setup included)",
                 f"{r['video_8_frames_s']:.2f} s", "", "", ""])  # fmt: skip
    return markdown_table(["what", "measured", "CG iterations", "aim", "met"], rows)


def figure_real(res: dict[str, Any], path: Path) -> None:
    """Crops of the group 6/7 elements: TLI, HR^ 1-12, HR^ 2-12, SuperRes 1-12."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = res["_images"]
    show = [k for k in ("TLI, frame 1", "HR^ frames 1-12", "HR^ frames 2-12 (leave-one-out)",
                        "PyFibreBundle SuperRes 1-12 (its shifts)") if k in imgs]  # fmt: skip
    fig, axes = plt.subplots(1, len(show), figsize=(3.2 * len(show), 3.6))
    for ax, key in zip(np.atleast_1d(axes), show):
        image, offset = imgs[key]
        oy, ox = (int(round(v)) for v in offset)
        crop = image[420 + oy : 670 + oy, 440 + ox : 600 + ox]
        lo, hi = np.percentile(crop[np.isfinite(crop)], [1, 99])
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(key, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f} at start"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="registration,fusion,fibres,real,speed")
    parser.add_argument("--quick", action="store_true", help="fewer images, frames, repeats")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--no-peer", action="store_true", help="skip PyFibreBundle")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    meta = {
        "command": COMMAND + (" --quick" if args.quick else ""),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "threads": args.threads,
    }
    stamp = f"Generated by `{meta['command']}` on {meta['date']} ({meta['machine']})."
    results: dict[str, Any] = {"meta": meta, "stamps": {}}
    if RESULTS.exists() and not args.quick:
        previous = json.loads(RESULTS.read_text())
        old = previous.get("meta", {})
        old_stamp = (
            f"Generated by `{old.get('command', COMMAND)}` on {old.get('date', '?')} "
            f"({old.get('machine', '?')})."
        )
        results.update({k: v for k, v in previous.items() if k not in ("meta", "stamps")})
        # each part keeps the stamp of the run that measured it
        results["stamps"] = {
            k: previous.get("stamps", {}).get(k, old_stamp)
            for k in previous
            if k not in ("meta", "stamps")
        }
    for part in parts:
        results["stamps"][part] = stamp
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "cycsr_bench_video"
    sections: dict[str, str] = {}
    if "registration" in parts:
        results["registration"] = bench_registration(args.quick)
    if "fusion" in parts:
        results["fusion"] = bench_fusion(args.quick)
    if "speed" in parts:
        results["speed"] = bench_speed(args.quick)
    if "fibres" in parts:
        results["fibres"] = bench_fibres(args.quick)
    if "real" in parts:
        if not (SHARED_DATA / "super_res").is_dir():
            print(f"real video not found under {SHARED_DATA}; part 'real' skipped")
        else:
            peer = None
            if not args.no_peer:
                from bench_peers import default_venv_path, ensure_peer_venv

                peer = ensure_peer_venv(default_venv_path())
            real = bench_real(args.quick, peer, work, 3 if args.quick else 5)
            if not args.no_docs:
                figure_real(real, REPO_ROOT / "docs" / "images" / "video_usaf.png")
            real.pop("_images")
            results["real"] = real
    stamps = results["stamps"]
    if "registration" in results:
        sections["video-registration"] = (
            stamps["registration"] + "\n\n" + report_registration(results["registration"])
        )
    if "fusion" in results:
        tk, tc = report_fusion(results["fusion"])
        sections["video-fusion"] = stamps["fusion"] + "\n\n" + tk
        sections["video-fusion-classes"] = tc
    if "real" in results:
        tr, tt = report_real(results["real"])
        sections["video-real"] = stamps["real"] + "\n\n" + tr
        sections["video-real-times"] = tt
    if "fibres" in results:
        sections["video-fibres"] = stamps["fibres"] + "\n\n" + report_fibres(results["fibres"])
    if "speed" in results:
        sections["video-speed"] = stamps["speed"] + "\n\n" + report_speed(results["speed"])
    for key, text in sections.items():
        print(f"\n## {key}\n{text}")
    if not args.no_docs and not args.quick:
        write_json(RESULTS, results)
        for doc in ("video.md", "benchmarks.md"):
            update_markdown(REPO_ROOT / "docs" / doc, sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
