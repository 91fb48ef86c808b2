"""Self-ensemble at inference: the shipped models with 1, 2, 4 and 8 members.

``super_resolve(ensemble=N)`` runs the network on N quarter turns / mirror images of each
frame and averages the outputs turned back. This script scores every shipped model at every
size on the content-class crops of one split (texture, smooth, sparse; 12 crops of 128 px
each, simulated at noise sd 0.005, 0.01, 0.02 and 0.05 with the seeds of the learning
curves): ΔPSNR / ΔSSIM against TLI of the network alone and after the noise-aware
projection onto the crop's fibre values, and a paired t-test of each size against the
network once (N = 1) after the projection. The default size was chosen on the validation
split; the test split is Table 3 (``bench_pretrained.py --ensemble``).

Examples::

    python benchmarks/bench_ensemble.py --split validation
    python benchmarks/bench_ensemble.py --split validation --name default --sizes 1 4
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CONTENT_CLASSES,
    NOISE_LEVELS,
    REPO_ROOT,
    fmt_p,
    markdown_table,
    paired_ttest,
    update_markdown,
    write_json,
)
from learning_curves import simulate_set  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
DOCS = REPO_ROOT / "docs" / "pretrained.md"


def score(model: Any, sims: list[Any], size: int) -> dict[str, list[float]]:
    """Per crop: ΔPSNR / ΔSSIM against TLI of the network (``net``) and + projection."""
    from napari_cycsr.consistency import project_consistent
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.metrics import psnr, ssim

    rows: dict[str, list[float]] = {k: [] for k in ("net_dpsnr", "proj_dpsnr", "proj_dssim")}
    for sim in sims:
        m, hr, b = sim.mask, sim.hr, sim.bundle
        sr = super_resolve(model, sim.lr, device="cpu", mask=m, spacing=b.spacing, ensemble=size)
        proj = project_consistent(sr, b, sim.values)
        p0 = psnr(sim.lr, hr, mask=m, data_range=(0, 1))
        s0 = ssim(sim.lr, hr, mask=m, data_range=(0, 1))
        rows["net_dpsnr"].append(psnr(sr, hr, mask=m, data_range=(0, 1)) - p0)
        rows["proj_dpsnr"].append(psnr(proj, hr, mask=m, data_range=(0, 1)) - p0)
        rows["proj_dssim"].append(ssim(proj, hr, mask=m, data_range=(0, 1)) - s0)
    return rows


def report(per: dict[str, Any], sizes: list[int]) -> str:
    """Markdown: per model and size, the projection's ΔPSNR / ΔSSIM per cell and the mean."""
    cells = [f"{c}@{n:g}" for c in CONTENT_CLASSES for n in NOISE_LEVELS]
    header = ["model", "members", *[c.replace("@", " sd ") for c in cells], "mean ΔPSNR"]
    rows = []
    for name, by_size in per.items():
        for size in sizes:
            r = by_size[str(size)]
            line = [f"`{name}`", str(size)]
            for cell in cells:
                d = r[cell]
                text = f"{np.mean(d['proj_dpsnr']):+.2f} / {np.mean(d['proj_dssim']):+.3f}"
                if size != 1:
                    _, p = paired_ttest(d["proj_dpsnr"], by_size["1"][cell]["proj_dpsnr"])
                    text += f" ({fmt_p(p)})"
                line.append(text)
            line.append(f"{np.mean([np.mean(r[c]['proj_dpsnr']) for c in cells]):+.2f}")
            rows.append(line)
    return (
        "Cells: network + noise-aware projection, ΔPSNR (dB) / ΔSSIM against TLI, mean over "
        "the crops; in brackets the paired t-test p of the ΔPSNR against the same model with "
        "one member (the network once).\n\n" + markdown_table(header, rows)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("validation", "test"), default="validation")
    parser.add_argument("--name", nargs="+", default=None, help="shipped models (default: all)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8], metavar="N")
    parser.add_argument("--count", type=int, default=12, help="crops per class")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    import torch

    from napari_cycsr import list_pretrained, pretrained
    from napari_cycsr.config import ENSEMBLE_SIZES

    if any(n not in ENSEMBLE_SIZES for n in args.sizes):
        parser.error(f"--sizes must be among {ENSEMBLE_SIZES}")
    sizes = sorted(set(args.sizes) | {1})  # the network once is the reference
    torch.set_num_threads(max(1, args.threads))
    names = args.name or [m["name"] for m in list_pretrained()]
    command = "python benchmarks/bench_ensemble.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-docs"
    )
    t0 = time.perf_counter()
    sims = {
        f"{c}@{n:g}": simulate_set(f"{c}:{args.split}", n, 128, args.count, 0)
        for c in CONTENT_CLASSES
        for n in NOISE_LEVELS
    }
    per: dict[str, Any] = {}
    for name in names:
        model = pretrained(name)
        per[name] = {}
        for size in sizes:
            per[name][str(size)] = {cell: score(model, group, size) for cell, group in sims.items()}
            mean = np.mean([np.mean(v["proj_dpsnr"]) for v in per[name][str(size)].values()])
            print(
                f"[{time.perf_counter() - t0:5.0f}s] {name} x{size}: + projection {mean:+.3f} dB "
                "over TLI (mean of the cells)",
                flush=True,
            )
    seconds = time.perf_counter() - t0
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    head = (
        f"Generated by `{command}` on {stamp} in {seconds / 60:.1f} min ({platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s)); "
        f"{args.count} {args.split} crops per class and noise level.\n\n"
    )
    md = head + report(per, sizes)
    print(md)
    write_json(
        RESULTS / f"ensemble_{args.split}.json",
        {"command": command, "date": stamp, "seconds": seconds, "sizes": sizes, "per": per},
    )
    if not args.no_docs:
        update_markdown(DOCS, {f"ensemble-{args.split}": md})
        print(f"updated {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
