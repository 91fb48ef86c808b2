"""Worker run by ``bench_peers.py`` inside the PyFibreBundle virtual environment.

This file imports only numpy, json and PyFibreBundle (``pybundle``): it never imports
napari-cycsr, torch or Qt, because it runs in a separate venv. It talks to the parent
process through files only: a ``job.json`` describing the tasks, ``.npy`` arrays in and out
(loaded with ``allow_pickle=False``) and a ``results.json`` with scalars and timings.

Usage: ``<peer-venv>/bin/python benchmarks/_peer_worker.py JOB_DIR``

Tasks (``job["tasks"]``, each a dict with ``"name"`` and ``"kind"``):

``detect``
    ``image`` (npy file name), optional ``spacing``. Runs PyFibreBundle's own core finder the
    way its calibration does (locate and mask the bundle, estimate the core spacing from the
    Fourier spectrum, regional maxima), writes ``<name>_centres.npy`` as (N, 2) (y, x) and
    reports the spacing it used and the time taken.
``interp``
    ``centres`` (N, 2) (y, x), ``values`` (T, N), ``grid`` {cy, cx, r}. Triangular linear
    interpolation of given values at given centres onto the square grid of pixel positions
    ``cy - r .. cy + r`` by ``cx - r .. cx + r`` (so it lines up with integer pixels).
    Writes ``<name>_image.npy`` (first frame, NaN outside the triangulation) and reports the
    setup time and the per-frame / per-stack reconstruction times.
``pipeline``
    ``raw`` (T, H, W) frames, ``background`` (H, W), ``grid``. The end-to-end PyFibreBundle
    pipeline a user would run: calibrate on the background frame (core finding, Delaunay,
    flat-field by the background), then reconstruct each raw frame. Writes
    ``<name>_image.npy`` (first frame, in units of value / background, NaN outside the
    triangulation) and ``<name>_centres.npy``, and reports timings.
``superres``
    ``raw`` (T, H, W) frames, ``background`` (H, W), ``first`` (frames ``first:`` are
    used), optional ``shifts`` (npy, (n, 2) as PyFibreBundle's (x, y) shifts of each image's
    cores in image 0's coordinates; default: PyFibreBundle estimates them), ``grid``.
    PyFibreBundle's multi-frame ``SuperRes.calib_multi_tri_interp`` (flat-fielded by the
    background) and ``recon_multi_tri_interp``. Writes ``<name>_image.npy`` (in units of
    value / background, NaN outside the mask) and reports the calibration and
    reconstruction times.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def _median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, in seconds."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _grid_points(grid: dict) -> tuple[float, float, float, int]:
    cx, cy, r = float(grid["cx"]), float(grid["cy"]), float(grid["r"])
    return cx, cy, r, int(round(2 * r)) + 1


def _detect(pybundle, job_dir: Path, task: dict) -> dict:
    img = np.load(job_dir / task["image"], allow_pickle=False)
    t0 = time.perf_counter()
    masked = pybundle.auto_mask(img)
    spacing = task.get("spacing")
    if spacing is None:
        spacing = float(pybundle.find_core_spacing(masked))
    cx, cy = pybundle.find_cores(masked, spacing)
    elapsed = time.perf_counter() - t0
    # repeat for a median time (the first call may include JIT/warm-up costs)
    repeats = int(task.get("repeats", 3))

    def run() -> None:
        m = pybundle.auto_mask(img)
        s = task.get("spacing") or float(pybundle.find_core_spacing(m))
        pybundle.find_cores(m, s)

    t_med = _median_time(run, repeats)
    centres = np.stack([np.asarray(cy, float), np.asarray(cx, float)], axis=1)
    np.save(job_dir / f"{task['name']}_centres.npy", centres)
    return {
        "spacing": float(spacing),
        "n_cores": int(len(centres)),
        "time_first_s": elapsed,
        "time_median_s": t_med,
    }


def _interp(pybundle, job_dir: Path, task: dict) -> dict:
    from pybundle import core_interpolation as ci

    centres = np.load(job_dir / task["centres"], allow_pickle=False)
    values = np.load(job_dir / task["values"], allow_pickle=False).astype(np.float64)
    if values.ndim == 1:
        values = values[None]
    cx, cy, r, n = _grid_points(task["grid"])
    core_x = centres[:, 1].astype(np.float64)
    core_y = centres[:, 0].astype(np.float64)
    dummy = np.zeros((4, 4), np.float32)
    t0 = time.perf_counter()
    calib = pybundle.init_tri_interp(
        dummy, core_x, core_y, cx, cy, r, n, filterSize=None, mask=False
    )
    t_setup = time.perf_counter() - t0
    use_numba = bool(getattr(ci, "numbaAvailable", False))
    # an all-ones mask selects the numba kernel's masked branch; see "unmasked_max_diff"
    ones = np.ones(n * n, np.uint8)

    def one(v: np.ndarray, mask: np.ndarray | None = ones) -> np.ndarray:
        if use_numba:
            return ci.grid_data_numba(calib.baryCoords, v, calib.coreIdx, calib.mapping, mask)
        return ci.grid_data(calib.baryCoords, v, calib.coreIdx, calib.mapping)

    one(values[0])  # JIT warm-up
    repeats = int(task.get("repeats", 5))
    t_frame = _median_time(lambda: one(values[0]), repeats)
    t_stack = _median_time(lambda: [one(v) for v in values], max(1, repeats // 2))
    image = one(values[0]).reshape(n, n).astype(np.float64)
    inside = calib.mapping.reshape(n, n) >= 0
    # the mask=None branch of the numba kernel (what recon_tri_interp uses when the
    # calibration has mask=False): compare it with the masked branch on the same input
    unmasked = one(values[0], None).reshape(n, n)
    unmasked_diff = float(np.max(np.abs(unmasked - image)[inside])) if use_numba else 0.0
    image[~inside] = np.nan
    np.save(job_dir / f"{task['name']}_image.npy", image)
    return {
        "unmasked_max_diff": unmasked_diff,
        "setup_s": t_setup,
        "frame_s": t_frame,
        "stack_s": t_stack,
        "n_frames": int(len(values)),
        "numba": use_numba,
    }


def _pipeline(pybundle, job_dir: Path, task: dict) -> dict:
    raw = np.load(job_dir / task["raw"], allow_pickle=False)
    if raw.ndim == 2:
        raw = raw[None]
    background = np.load(job_dir / task["background"], allow_pickle=False)
    cx, cy, r, n = _grid_points(task["grid"])
    t0 = time.perf_counter()
    spacing = float(pybundle.find_core_spacing(pybundle.auto_mask(background)))
    calib = pybundle.calib_tri_interp(
        background,
        spacing,
        n,
        centreX=cx,
        centreY=cy,
        radius=r,
        normalise=background,
        mask=True,
    )
    t_calib = time.perf_counter() - t0
    pybundle.recon_tri_interp(raw[0], calib)  # JIT warm-up
    repeats = int(task.get("repeats", 5))
    t_frame = _median_time(lambda: pybundle.recon_tri_interp(raw[0], calib), repeats)
    t_stack = _median_time(
        lambda: [pybundle.recon_tri_interp(f, calib) for f in raw], max(1, repeats // 2)
    )
    # PyFibreBundle scales flat-fielded values by 255; bring them back to value / background
    image = np.asarray(pybundle.recon_tri_interp(raw[0], calib), np.float64) / 255.0
    inside = (calib.mapping.reshape(n, n) >= 0) & np.asarray(calib.mask, bool)
    image[~inside] = np.nan
    np.save(job_dir / f"{task['name']}_image.npy", image)
    centres = np.stack([np.asarray(calib.coreY, float), np.asarray(calib.coreX, float)], 1)
    np.save(job_dir / f"{task['name']}_centres.npy", centres)
    return {
        "spacing": spacing,
        "n_cores": int(len(centres)),
        "calib_s": t_calib,
        "frame_s": t_frame,
        "stack_s": t_stack,
        "n_frames": int(len(raw)),
    }


def _superres(pybundle, job_dir: Path, task: dict) -> dict:
    from pybundle import SuperRes

    raw = np.load(job_dir / task["raw"], allow_pickle=False)[int(task.get("first", 0)) :]
    background = np.load(job_dir / task["background"], allow_pickle=False)
    shifts = task.get("shifts")
    if shifts is not None:
        shifts = np.load(job_dir / shifts, allow_pickle=False).astype(np.float64)
    cx, cy, r, n = _grid_points(task["grid"])
    imgs = np.ascontiguousarray(np.moveaxis(raw, 0, -1))  # (H, W, n) as it expects
    spacing = float(pybundle.find_core_spacing(pybundle.auto_mask(background)))

    def calibrate():
        return SuperRes.calib_multi_tri_interp(
            background, None if shifts is not None else imgs, spacing, n,
            normalise=background, centreX=cx, centreY=cy, radius=r, shifts=shifts,
        )  # fmt: skip

    t0 = time.perf_counter()
    calib = calibrate()
    t_calib = time.perf_counter() - t0
    SuperRes.recon_multi_tri_interp(imgs, calib)  # JIT warm-up
    repeats = int(task.get("repeats", 3))
    t_recon = _median_time(lambda: SuperRes.recon_multi_tri_interp(imgs, calib), repeats)
    image = np.asarray(SuperRes.recon_multi_tri_interp(imgs, calib), np.float64)
    if calib.mask is not None:
        image[~np.asarray(calib.mask, bool)] = np.nan
    np.save(job_dir / f"{task['name']}_image.npy", image)
    return {
        "calib_s": t_calib,
        "recon_s": t_recon,
        "n_frames": int(imgs.shape[-1]),
        "shifts": np.asarray(calib.shifts, np.float64).tolist(),
        "spacing": spacing,
    }


_KINDS = {"detect": _detect, "interp": _interp, "pipeline": _pipeline, "superres": _superres}


def main(argv: list[str]) -> int:
    """Run every task of ``argv[1]/job.json`` and write ``results.json`` beside it."""
    if len(argv) != 2:
        print("usage: _peer_worker.py JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(argv[1])
    job = json.loads((job_dir / "job.json").read_text())
    import pybundle

    version = "unknown"
    try:
        from importlib.metadata import version as _version

        version = _version("PyFibreBundle")
    except Exception:  # noqa: BLE001 - metadata lookup is informative only
        pass
    results: dict = {"pyfibrebundle_version": version, "tasks": {}}
    for task in job["tasks"]:
        kind = task["kind"]
        if kind not in _KINDS:
            raise ValueError(f"unknown task kind {kind!r}; expected one of {sorted(_KINDS)}")
        results["tasks"][task["name"]] = _KINDS[kind](pybundle, job_dir, task)
    (job_dir / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
