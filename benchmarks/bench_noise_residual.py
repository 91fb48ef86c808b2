"""The noise level of the fibre values from the network's residual: tried, not used.

On the validation crops of each content class and noise level (12 crops of 128 px, the
seeds of the learning curves), the shipped default model super-resolves each crop (its
default self-ensemble); its residual ``values - cell means of its output`` gives a robust
noise level (1.4826 MAD). Printed per cell: the median ratio to the true level of that
estimate and of one frame's own estimate (``consistency.estimate_noise``), and ΔPSNR against
TLI of the network + noise-aware projection given each level (the one-frame estimate, the
residual one, the smaller of the two, the truth). Results in
``benchmarks/results/noise_residual.json``. Conclusion in docs/pretrained.md ("With a known
noise level"): the residual underestimates at high noise, so it is not used.

::

    python benchmarks/bench_noise_residual.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CONTENT_CLASSES, NOISE_LEVELS, REPO_ROOT, write_json  # noqa: E402
from learning_curves import simulate_set  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"


def residual_noise(values: np.ndarray, bundle: object, sr: np.ndarray) -> float:
    """Robust standard deviation of the fibre values minus the cell means of ``sr``."""
    res = np.asarray(values, np.float64) - np.asarray(bundle.vectorize(sr), np.float64)
    res = res[np.isfinite(res)]
    return float(1.4826 * np.median(np.abs(res - np.median(res))))


def main(argv: list[str] | None = None) -> int:
    import torch

    from napari_cycsr import pretrained
    from napari_cycsr.consistency import estimate_noise, project_consistent
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.metrics import psnr

    torch.set_num_threads(1)
    model = pretrained("default")
    t0 = time.perf_counter()
    cells = {}
    for cls in CONTENT_CLASSES:
        for noise in NOISE_LEVELS:
            rows: dict[str, list[float]] = {}
            for s in simulate_set(f"{cls}:validation", noise, 128, 12, 0):
                sr = super_resolve(model, s.lr, device="cpu", mask=s.mask)
                alone = float(estimate_noise(s.values, s.bundle))
                resid = residual_noise(s.values, s.bundle, sr)
                rows.setdefault("ratio_frame", []).append(alone / noise)
                rows.setdefault("ratio_residual", []).append(resid / noise)
                p0 = psnr(s.lr, s.hr, mask=s.mask, data_range=(0, 1))
                for key, sigma in (("frame", alone), ("residual", resid),
                                   ("smaller", min(alone, resid)), ("true", noise)):  # fmt: skip
                    out = project_consistent(sr, s.bundle, s.values, noise=sigma)
                    d = psnr(out, s.hr, mask=s.mask, data_range=(0, 1)) - p0
                    rows.setdefault(f"dpsnr_{key}", []).append(d)
            cells[f"{cls}@{noise:g}"] = rows
            print(
                f"{cls:8s} sd {noise:<6g} estimate / true: one frame "
                f"{np.median(rows['ratio_frame']):5.2f}, residual "
                f"{np.median(rows['ratio_residual']):5.2f} | ΔPSNR + projection with: one frame "
                f"{np.mean(rows['dpsnr_frame']):+.3f}, residual "
                f"{np.mean(rows['dpsnr_residual']):+.3f}, smaller "
                f"{np.mean(rows['dpsnr_smaller']):+.3f}, true "
                f"{np.mean(rows['dpsnr_true']):+.3f}",
                flush=True,
            )
    command = "python benchmarks/bench_noise_residual.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    write_json(
        RESULTS / "noise_residual.json",
        {"command": command.strip(), "seconds": time.perf_counter() - t0, "cells": cells},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
