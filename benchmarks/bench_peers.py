"""Compare napari-cycsr's fibre-bundle basics with PyFibreBundle, in one run.

PyFibreBundle (``pip install PyFibreBundle``, import name ``pybundle``) is the reference
open-source package for fibre-bundle core removal. It is *not* a dependency of napari-cycsr
(it requires ``opencv-python``, whose bundled Qt conflicts with napari's), so this script
builds its own virtual environment (default ``~/.cache/napari-cycsr/peer-venv``, outside
the repository; ``--venv`` or ``$CYCSR_PEER_VENV`` choose another folder) holding
PyFibreBundle (installed with ``--no-deps``) plus numpy, scipy, pillow, numba and
``opencv-python-headless``, and runs ``benchmarks/_peer_worker.py`` there. The two processes
exchange ``.npy`` arrays and JSON only (no pickle).

On the same frames, measured in the same run:

* core detection: ours (``FibreBundle.detect``) and theirs (``find_core_spacing`` +
  ``find_cores`` on the auto-masked frame): how many of their cores ours matches within 1 px
  and vice versa; on synthetic frames with known centres, recall / precision (a match is
  within half a core spacing) and the median error of each against the truth;
* TLI reconstruction: the same centres and the same core values interpolated by both onto
  the same square pixel grid (max |difference| over the common FOV), and the time per frame
  and per stack (ours: one sparse product for the stack; theirs: one numba call per frame);
* the end-to-end pipelines (detect on the background frame, flat-field, reconstruct):
  reconstructed image differences and times.

Usage::

    python benchmarks/bench_peers.py                # writes docs/benchmarks.md (peers section)
    python benchmarks/bench_peers.py --quick        # smaller stacks, fewer repeats
    python benchmarks/bench_peers.py --no-docs      # print only

Figures are medians of repeats on the machine the script runs on; they are indicative when
the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REAL_FRAMES,
    REPO_ROOT,
    load_grey,
    load_real_frame,
    markdown_table,
    match_points,
    render_raw_frame,
    update_markdown,
    write_json,
)

PEER_PACKAGE = "PyFibreBundle==1.3.6"
# numpy < 2.3: PyFibreBundle 1.3.6 converts 1-element arrays to int (an error from NumPy 2.3)
PEER_DEPS = ("numpy<2.3", "scipy", "pillow", "numba", "opencv-python-headless")
WORKER = Path(__file__).resolve().parent / "_peer_worker.py"
COMMAND = "python benchmarks/bench_peers.py"


# ---------------------------------------------------------------------- the peer venv


def default_venv_path() -> Path:
    """Where the peer venv lives by default: outside the repository, in the user cache.

    ``$CYCSR_PEER_VENV`` when set, else ``$XDG_CACHE_HOME/napari-cycsr/peer-venv`` (default
    ``~/.cache/napari-cycsr/peer-venv``).
    """
    env = os.environ.get("CYCSR_PEER_VENV")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "napari-cycsr" / "peer-venv"


def venv_python(path: Path) -> Path:
    """Path of the Python interpreter inside the virtual environment ``path``."""
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return Path(path) / sub


def ensure_peer_venv(path: Path, *, recreate: bool = False, log=print) -> Path:
    """Create (once) the PyFibreBundle venv and return its Python interpreter.

    Parameters
    ----------
    path : Path
        Folder of the venv.
    recreate : bool
        Delete and rebuild an existing venv.
    log : callable
        Progress messages.

    Returns
    -------
    Path
        The venv's ``python``.

    Raises
    ------
    RuntimeError
        With pip's last output lines, when the packages cannot be installed.
    """
    path = Path(path)
    py = venv_python(path)
    if recreate and path.exists():
        shutil.rmtree(path)
    if py.exists():
        check = subprocess.run(
            [str(py), "-c", "import pybundle, cv2, numba"], capture_output=True, text=True
        )
        if check.returncode == 0:
            return py
        log(f"peer venv at {path} is incomplete; installing packages")
    else:
        log(f"creating peer venv at {path}")
        venv.EnvBuilder(with_pip=True, clear=False).create(path)
    steps = [
        [str(py), "-m", "pip", "install", "-q", *PEER_DEPS],
        [str(py), "-m", "pip", "install", "-q", "--no-deps", PEER_PACKAGE],
    ]
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"`{' '.join(cmd[2:])}` failed in the peer venv:\n{tail}")
    return py


def run_worker(python: Path, job_dir: Path, tasks: list[dict], timeout: float = 1800) -> dict:
    """Run the peer worker on ``tasks`` (arrays already saved in ``job_dir``)."""
    (job_dir / "job.json").write_text(json.dumps({"tasks": tasks}, indent=2))
    res = subprocess.run(
        [str(python), str(WORKER), str(job_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "1")},
    )
    if res.returncode != 0:
        raise RuntimeError(f"peer worker failed (exit {res.returncode}):\n{res.stderr[-4000:]}")
    return json.loads((job_dir / "results.json").read_text())


# ---------------------------------------------------------------------- frames


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def synthetic_frames(
    *, spacing: float, shape: tuple[int, int] = (480, 480), seed: int = 0
) -> dict[str, Any]:
    """Raw + background frames of a simulated bundle with known centres.

    The bundle is a jittered hexagonal lattice in a circular FOV (``simulate_pcle``); the
    scene is scikit-image's "gravel"; each core has a gain drawn from ``1 + 0.15 N(0, 1)``
    (the background frame shows these gains on a uniform scene); spots are Gaussians of
    width ``0.2 * spacing``.
    """
    from napari_cycsr.simulate import simulate_pcle

    hr = load_grey("gravel")[: shape[0], : shape[1]]
    sim = simulate_pcle(hr, spacing=spacing, noise=0.0, seed=seed)
    rng = np.random.default_rng(seed + 1)
    gains = np.clip(1.0 + 0.15 * rng.standard_normal(sim.bundle.n_fibres), 0.3, None)
    sigma = 0.2 * spacing
    peak = 0.85
    background = render_raw_frame(
        sim.bundle.centres, peak * gains, shape, core_sigma=sigma, noise=0.01, seed=seed + 2
    )
    raw = render_raw_frame(
        sim.bundle.centres,
        peak * gains * (0.1 + 0.9 * sim.clean_values),
        shape,
        core_sigma=sigma,
        noise=0.01,
        seed=seed + 3,
    )
    return {"raw": raw, "background": background, "truth": np.array(sim.bundle.centres)}


def _stack(raw: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` uint8 frames: ``raw`` with independent noise (a short 'video')."""
    rng = np.random.default_rng(seed)
    frames = raw[None] * 255.0 + rng.normal(0.0, 2.0, (n, *raw.shape))
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _square_grid(centres: np.ndarray, shape: tuple[int, int]) -> dict[str, int]:
    """Largest square of integer pixels centred on the centres' mean that fits the image."""
    cy, cx = (int(round(v)) for v in centres.mean(axis=0))
    r = min(cy, cx, shape[0] - 1 - cy, shape[1] - 1 - cx)
    return {"cy": cy, "cx": cx, "r": int(r)}


def _diff_stats(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    ok = mask & np.isfinite(a) & np.isfinite(b)
    d = np.abs(a[ok] - b[ok])
    scale = float(np.percentile(np.abs(b[ok]), 99)) if ok.any() else float("nan")
    return {
        "pixels": int(ok.sum()),
        "max_abs": float(d.max()) if d.size else float("nan"),
        "median_abs": float(np.median(d)) if d.size else float("nan"),
        "p99_ref": scale,
    }


# ---------------------------------------------------------------------- one data set


def compare_dataset(
    name: str,
    raw: np.ndarray,
    background: np.ndarray,
    *,
    python: Path,
    work: Path,
    n_frames: int,
    repeats: int,
    truth: np.ndarray | None = None,
) -> dict[str, Any]:
    """Run every comparison on one (raw, background) pair; returns a JSON-able dict."""
    from napari_cycsr.fibres import FibreBundle

    out: dict[str, Any] = {"name": name, "shape": list(raw.shape), "n_frames": n_frames}
    job = work / name
    job.mkdir(parents=True, exist_ok=True)
    bg8 = np.clip(np.rint(background * 255), 0, 255).astype(np.uint8)
    stack = _stack(raw, n_frames, seed=11)
    np.save(job / "background.npy", bg8)
    np.save(job / "stack.npy", stack)

    # ours: detection on the background (flat-field) frame
    t0 = time.perf_counter()
    bundle = FibreBundle.detect(bg8)
    t_first = time.perf_counter() - t0
    t_det = _median_time(lambda: FibreBundle.detect(bg8), repeats)
    ours = np.array(bundle.centres)
    grid = _square_grid(ours, raw.shape)
    y0, x0, n = grid["cy"] - grid["r"], grid["cx"] - grid["r"], 2 * grid["r"] + 1

    # the same centres (inside the square) and the same core values for both interpolators
    sel = (
        (ours[:, 0] >= y0 - 0.5)
        & (ours[:, 0] <= y0 + n - 0.5)
        & (ours[:, 1] >= x0 - 0.5)
        & (ours[:, 1] <= x0 + n - 0.5)
    )
    values = bundle.core_values(stack, background=bg8)[:, sel].astype(np.float64)
    np.save(job / "centres_abs.npy", ours[sel])
    np.save(job / "values.npy", values)

    tasks = [
        {"name": "detect", "kind": "detect", "image": "background.npy", "repeats": repeats},
        {
            "name": "interp",
            "kind": "interp",
            "centres": "centres_abs.npy",
            "values": "values.npy",
            "grid": grid,
            "repeats": repeats,
        },
        {
            "name": "pipeline",
            "kind": "pipeline",
            "raw": "stack.npy",
            "background": "background.npy",
            "grid": grid,
            "repeats": repeats,
        },
    ]
    peer = run_worker(python, job, tasks)
    out["pyfibrebundle_version"] = peer["pyfibrebundle_version"]
    theirs = np.load(job / "detect_centres.npy", allow_pickle=False)

    det = {
        "ours_n": int(len(ours)),
        "theirs_n": int(len(theirs)),
        "ours_spacing": float(bundle.spacing),
        "theirs_spacing": peer["tasks"]["detect"]["spacing"],
        "ours_time_s": t_det,
        "ours_time_first_s": t_first,
        "theirs_time_s": peer["tasks"]["detect"]["time_median_s"],
        "agreement_1px": match_points(ours, theirs, 1.0),
    }
    if truth is not None:
        from scipy.spatial import cKDTree

        nn = cKDTree(truth).query(truth, k=2)[0][:, 1]
        radius = 0.5 * float(np.median(nn))
        for who, pts in (("ours", ours), ("theirs", theirs)):
            m = match_points(pts, truth, radius)
            det[f"{who}_vs_truth"] = {
                "precision": m["a_in_b"],
                "recall": m["b_in_a"],
                "median_error_px": m["median_a_to_b"],
                "within_1px": match_points(pts, truth, 1.0)["a_in_b"],
            }
    out["detection"] = det

    # TLI on the same grid, same centres, same values
    local = FibreBundle(ours[sel] - [y0, x0], (n, n))
    t0 = time.perf_counter()
    image = local.reconstruct(values[0])
    t_setup = time.perf_counter() - t0
    t_frame = _median_time(lambda: local.reconstruct(values[0]), repeats)
    t_stack = _median_time(lambda: local.reconstruct(values), max(1, repeats // 2))
    their_img = np.load(job / "interp_image.npy", allow_pickle=False)
    pi = peer["tasks"]["interp"]
    out["tli"] = {
        "grid": [n, n],
        "n_fibres": int(sel.sum()),
        "ours_setup_s": t_setup,
        "ours_frame_s": t_frame,
        "ours_stack_s": t_stack,
        "theirs_setup_s": pi["setup_s"],
        "theirs_frame_s": pi["frame_s"],
        "theirs_stack_s": pi["stack_s"],
        "theirs_numba": pi["numba"],
        "theirs_unmasked_kernel_max_diff": pi["unmasked_max_diff"],
        "diff": _diff_stats(image.astype(np.float64), their_img, local.fov_mask),
    }

    # end to end: each package's own detection, core values, flat-field and TLI
    def ours_pipeline(frames: np.ndarray) -> np.ndarray:
        v = bundle.core_values(frames, background=bg8)
        return bundle.reconstruct(v)

    full = ours_pipeline(stack[0])[y0 : y0 + n, x0 : x0 + n]
    t_frame = _median_time(lambda: ours_pipeline(stack[0]), repeats)
    t_stack = _median_time(lambda: ours_pipeline(stack), max(1, repeats // 2))
    their_full = np.load(job / "pipeline_image.npy", allow_pickle=False)
    pp = peer["tasks"]["pipeline"]
    fov = bundle.fov_mask[y0 : y0 + n, x0 : x0 + n]
    out["pipeline"] = {
        "ours_detect_s": t_det,
        "ours_frame_s": t_frame,
        "ours_stack_s": t_stack,
        "theirs_calib_s": pp["calib_s"],
        "theirs_frame_s": pp["frame_s"],
        "theirs_stack_s": pp["stack_s"],
        "theirs_n_cores": pp["n_cores"],
        "diff": _diff_stats(full.astype(np.float64), their_full, fov),
    }
    out["_images"] = {"ours": full, "theirs": their_full, "fov": fov}
    return out


# ---------------------------------------------------------------------- report


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def report(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The Markdown of the peers section from the results of :func:`compare_dataset`."""
    lines = [
        f"Generated by `{meta['command']}` on {meta['date']} ({meta['machine']}); "
        f"PyFibreBundle {meta['pyfibrebundle_version']} in its own venv. Times are medians "
        f"of {meta['repeats']} repeats in the same run on a shared machine: indicative only.",
        "",
        "**Core detection** (both on the background / flat-field frame).",
        "",
    ]
    rows = []
    for r in results:
        d = r["detection"]
        a = d["agreement_1px"]
        row = [
            r["name"],
            f"{d['ours_n']} / {d['theirs_n']}",
            f"{_f(d['ours_spacing'])} / {_f(d['theirs_spacing'])}",
            f"{a['a_in_b']:.1%}",
            f"{a['b_in_a']:.1%}",
        ]
        if "ours_vs_truth" in d:
            o, t = d["ours_vs_truth"], d["theirs_vs_truth"]
            row += [
                f"{o['recall']:.1%} / {t['recall']:.1%}",
                f"{o['precision']:.1%} / {t['precision']:.1%}",
                f"{_f(o['median_error_px'], 2)} / {_f(t['median_error_px'], 2)}",
            ]
        else:
            row += ["n/a", "n/a", "n/a"]
        row.append(f"{_ms(d['ours_time_s'])} / {_ms(d['theirs_time_s'])}")
        rows.append(row)
    lines.append(
        markdown_table(
            [
                "frame",
                "cores found (ours / theirs)",
                "spacing px (ours / theirs)",
                "ours matched by theirs (≤1 px)",
                "theirs matched by ours (≤1 px)",
                "recall vs truth",
                "precision vs truth",
                "median error vs truth px",
                "time ms (ours / theirs)",
            ],
            rows,
        )
    )
    lines += [
        "",
        "Truth columns exist only for the synthetic frames (a detection matches a true centre "
        "within half a core spacing; the error is the distance to it).",
        "",
        "**TLI reconstruction, same centres and same core values** (our detected centres and "
        "flat-fielded core values fed to both interpolators, same square pixel grid).",
        "",
    ]
    rows = []
    for r in results:
        t = r["tli"]
        rows.append(
            [
                r["name"],
                f"{t['grid'][0]}² px, {t['n_fibres']} fibres",
                f"{t['diff']['max_abs']:.2e}",
                f"{_ms(t['ours_setup_s'])} / {_ms(t['theirs_setup_s'])}",
                f"{_ms(t['ours_frame_s'])} / {_ms(t['theirs_frame_s'])}",
                f"{t['theirs_frame_s'] / t['ours_frame_s']:.2f}",
                f"{_ms(t['ours_stack_s'])} / {_ms(t['theirs_stack_s'])} ({r['n_frames']} frames)",
                f"{t['theirs_stack_s'] / t['ours_stack_s']:.2f}",
            ]
        )
    lines.append(
        markdown_table(
            [
                "frame",
                "grid",
                "max abs diff (common FOV)",
                "setup ms (ours / theirs)",
                "per frame ms (ours / theirs)",
                "speed-up per frame",
                "per stack ms (ours / theirs)",
                "speed-up per stack",
            ],
            rows,
        )
    )
    bug = max(r["tli"]["theirs_unmasked_kernel_max_diff"] for r in results)
    lines += [
        "",
        "Setup = building the interpolation (Delaunay + barycentric weights); ours builds one "
        "sparse matrix, theirs the per-pixel triangle table used by its numba kernel. "
        "Speed-up = their time / our time (> 1: ours faster).",
        "",
        f"Note: PyFibreBundle's numba kernel has a second, unmasked branch (used when a "
        f"calibration is made with `mask=False`); on the same input it differs from the "
        f"masked branch by up to {bug:.3g} (in units of the flat-fielded values), which "
        f"points to an indexing slip in that branch (the first barycentric weight is read "
        f"from the wrong column). The comparison above uses the masked branch.",
        "",
        "**End-to-end pipelines** (each package's own detection, core values, flat-field and "
        "TLI; their image divided by their 255 scale factor).",
        "",
    ]
    rows = []
    for r in results:
        p = r["pipeline"]
        rows.append(
            [
                r["name"],
                f"{p['diff']['median_abs']:.3g} / {p['diff']['max_abs']:.3g}",
                f"{p['diff']['p99_ref']:.3g}",
                f"{_ms(p['ours_frame_s'])} / {_ms(p['theirs_frame_s'])}",
                f"{_ms(p['ours_stack_s'])} / {_ms(p['theirs_stack_s'])}",
                f"{p['theirs_stack_s'] / p['ours_stack_s']:.2f}",
            ]
        )
    lines.append(
        markdown_table(
            [
                "frame",
                "median / max abs diff",
                "image scale (p99)",
                "per frame ms (ours / theirs)",
                "per stack ms (ours / theirs)",
                "speed-up per stack",
            ],
            rows,
        )
    )
    lines += [
        "",
        "The end-to-end images differ by design: our core value is the mean over a disc of "
        "radius 0.3 x spacing around the sub-pixel centre, theirs the single pixel nearest "
        "the (rounded) centre; the detected core sets also differ (table above). Per-frame "
        "times include core-value extraction; our per-stack time is one sparse product for "
        "all frames.",
    ]
    return "\n".join(lines)


def _figure(results: list[dict[str, Any]], path: Path, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 3, figsize=(9, 3 * len(results)), squeeze=False)
    for row, r in zip(axes, results):
        ims = r["_images"]
        a, b = ims["ours"], np.nan_to_num(ims["theirs"])
        h, w = a.shape
        sl = (slice(h // 2 - 80, h // 2 + 80), slice(w // 2 - 80, w // 2 + 80))
        hi = float(np.percentile(a[ims["fov"]], 99.5)) if ims["fov"].any() else 1.0
        for ax, img, title in zip(
            row,
            (a[sl], b[sl], np.abs(a - b)[sl]),
            ("napari-cycsr TLI", "PyFibreBundle TLI", "|difference|"),
        ):
            ax.imshow(img, cmap="gray", vmin=0, vmax=hi if title != "|difference|" else None)
            ax.set_title(f"{r['name']}: {title}", fontsize=8)
            ax.axis("off")
    fig.suptitle(f"Centre crops, end-to-end pipelines. Made by `{command}`", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--venv", type=Path, default=default_venv_path(), help="peer venv folder (created once)"
    )
    parser.add_argument("--recreate-venv", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer frames and repeats")
    parser.add_argument("--frames", type=int, default=None, help="frames per stack")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/")
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--json", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "peers.json"
    )
    args = parser.parse_args(argv)
    n_frames = args.frames or (5 if args.quick else 20)
    repeats = args.repeats or (3 if args.quick else 5)
    command = COMMAND + (" --quick" if args.quick else "")

    try:
        python = ensure_peer_venv(args.venv, recreate=args.recreate_venv)
    except Exception as exc:  # noqa: BLE001 - report why the peer is unavailable
        msg = f"PyFibreBundle could not be installed in {args.venv}: {exc}"
        print(msg, file=sys.stderr)
        if not args.no_docs:
            update_markdown(args.docs, {"peers": f"Not run: {msg}"})
        return 1

    datasets: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = []
    for name in REAL_FRAMES:
        raw, bg = load_real_frame(name)
        datasets.append((name, raw, bg, None))
    for spacing in (6.5, 4.0):
        syn = synthetic_frames(spacing=spacing, seed=int(spacing * 10))
        datasets.append((f"synthetic s={spacing:g}", syn["raw"], syn["background"], syn["truth"]))

    results = []
    with tempfile.TemporaryDirectory(prefix="cycsr-peers-") as tmp:
        for name, raw, bg, truth in datasets:
            print(f"[peers] {name} ...", flush=True)
            key = name.replace(" ", "_").replace("=", "")
            results.append(
                compare_dataset(
                    key,
                    raw,
                    bg,
                    python=python,
                    work=Path(tmp),
                    n_frames=n_frames,
                    repeats=repeats,
                    truth=truth,
                )
            )
            results[-1]["name"] = name
    meta = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}",
        "pyfibrebundle_version": results[0]["pyfibrebundle_version"],
        "repeats": repeats,
    }
    text = report(results, meta)
    print(text)
    write_json(args.json, {"meta": meta, "results": [_strip(r) for r in results]})
    if not args.no_docs:
        fig = REPO_ROOT / "docs" / "images" / "bench_peers_tli.png"
        _figure(results, fig, command)
        text += f"\n\n![TLI of both packages]({fig.relative_to(args.docs.parent)})\n"
        update_markdown(args.docs, {"peers": text})
    return 0


def _strip(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if not k.startswith("_")}


if __name__ == "__main__":
    sys.exit(main())
