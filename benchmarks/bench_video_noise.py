"""The noise of the fibre values from a video, and what it gives the projection.

For each content class and noise level, short simulated videos (``bench_video_training``'s:
8 frames of 144 px, random-walk motion, fresh noise per frame) are registered with
*estimated* shifts, and the noise level of their fibre values is estimated two ways: from
each frame alone (``consistency.estimate_noise``, what ``super_resolve`` does by default) and
from the video (``video.estimate_video_noise``: each frame against the fusion of the others).
Then the shipped default model super-resolves frames 0 and 4 of each video and the output is
projected onto the frame's fibre values with each estimate, and with the true level; ΔPSNR
against the frame's TLI, mean over the frames. Results in
``benchmarks/results/video_noise_<split>.json``::

    python benchmarks/bench_video_noise.py --split validation
    python benchmarks/bench_video_noise.py --split test
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CONTENT_CLASSES, NOISE_LEVELS, REPO_ROOT, markdown_table, write_json  # noqa: E402
from bench_video_training import videos  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
FRAMES = (0, 4)


def run_cell(model: Any, vids: list[Any], noise: float) -> dict[str, Any]:
    from napari_cycsr.consistency import estimate_noise, project_consistent
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.metrics import psnr
    from napari_cycsr.video import estimate_video_noise, register

    out: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(float(value))

    skipped = 0
    for vid in vids:
        reg = register(vid.lr, vid.bundle)
        try:
            video_level = estimate_video_noise(vid.values, vid.bundle, reg)
        except ValueError:
            skipped += 1  # a video that cannot be registered: a user gets the error
            continue
        add("video_ratio", video_level / noise)
        for t in FRAMES:
            b, v, m = vid.bundle, vid.values[t], vid.bundle.fov_mask
            hr, lr = vid.frames[t], vid.lr[t]
            add("frame_ratio", float(estimate_noise(v, b)) / noise)
            sr = super_resolve(model, lr, device="cpu", mask=m)
            p0 = psnr(lr, hr, mask=m, data_range=(0, 1))
            for name, level in (("frame", "auto"), ("video", video_level), ("true", noise)):
                img = project_consistent(sr, b, v, noise=level)
                add(f"{name}_dpsnr", psnr(img, hr, mask=m, data_range=(0, 1)) - p0)
            add("net_dpsnr", psnr(sr, hr, mask=m, data_range=(0, 1)) - p0)
    res = {k: float(np.mean(x)) for k, x in out.items()}
    res["skipped"] = skipped
    res["per_frame"] = out
    return res


def run_real(model: Any) -> tuple[str, dict[str, Any]]:
    """The real USAF video: both noise estimates, and the projection with each against the
    leave-one-out HR^ of every frame (the reference of ``bench_pretrained.py --real``)."""
    from bench_pretrained import _video
    from napari_cycsr.consistency import estimate_noise, project_consistent
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.metrics import psnr, ssim
    from napari_cycsr.video import estimate_video_noise, leave_one_out

    values, bundle, _, reg = _video()
    video_level = estimate_video_noise(values, bundle, reg)
    # the residual against the others' fusion alone, without the min with one frame's estimate
    residual_level = estimate_video_noise(values, bundle, reg, combine=False)
    frame_levels = [float(estimate_noise(v, bundle)) for v in values]
    fov = bundle.fov_mask
    rows: dict[str, list[float]] = {}
    for t in np.flatnonzero(reg.confidence >= reg.min_confidence):
        ref, info = leave_one_out(values, bundle, reg, int(t), return_info=True)
        mask = fov & (np.rint(np.asarray(info.coverage)) >= len(info.frames))
        tli = bundle.reconstruct(values[t])
        net = super_resolve(model, tli, device="cpu", mask=fov, spacing=bundle.spacing)
        p0 = psnr(tli, ref, mask=mask)
        for name, img in (
            ("network alone", net),
            ("+ projection, one-frame estimate (default)",
             project_consistent(net, bundle, values[t])),
            ("+ projection, video estimate",
             project_consistent(net, bundle, values[t], noise=video_level)),
            ("+ projection, video residual alone",
             project_consistent(net, bundle, values[t], noise=residual_level)),
        ):  # fmt: skip
            rows.setdefault(f"{name}: ΔPSNR", []).append(psnr(img, ref, mask=mask) - p0)
            rows.setdefault(f"{name}: SSIM", []).append(ssim(img, ref, mask=mask))
    header = ["noise estimate", "value (core-value units)"]
    table = markdown_table(header, [
        ["one frame (median over the frames)", f"{np.median(frame_levels):.4g}"],
        ["video (estimate_video_noise)", f"{video_level:.4g}"],
        ["video residual alone (estimate_video_noise(..., combine=False))",
         f"{residual_level:.4g}"],
    ])  # fmt: skip
    table += "\n\n" + markdown_table(
        ["result (median over the frames, against the leave-one-out HR^)", "value"],
        [[k, f"{np.median(v):+.3f}" if "PSNR" in k else f"{np.median(v):.3f}"]
         for k, v in rows.items()],
    )  # fmt: skip
    return table, {
        "video_level": video_level, "residual_level": residual_level,
        "frame_levels": frame_levels, "rows": rows,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--count", type=int, default=3, help="videos per class and noise")
    parser.add_argument("--model", default="default", help="shipped model")
    parser.add_argument(
        "--real", action="store_true",
        help="instead: the real 12-frame USAF video (results video_noise_real.json)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    import torch

    from napari_cycsr import pretrained

    torch.set_num_threads(1)
    model = pretrained(args.model)
    t0 = time.perf_counter()
    command = "python benchmarks/bench_video_noise.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    if args.real:
        table, data = run_real(model)
        print(table)
        write_json(RESULTS / "video_noise_real.json", {
            "command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": time.perf_counter() - t0, "table": table, **data,
        })  # fmt: skip
        return 0
    cells = {}
    rows = []
    for cls in CONTENT_CLASSES:
        for noise in NOISE_LEVELS:
            r = run_cell(model, videos(cls, noise, args.count, 8, args.split), noise)
            cells[f"{cls}@{noise:g}"] = r
            row = [f"{cls}@{noise:g}", f"{r['frame_ratio']:.1f}x", f"{r['video_ratio']:.1f}x",
                   f"{r['net_dpsnr']:+.2f}", f"{r['frame_dpsnr']:+.2f}", f"{r['video_dpsnr']:+.2f}",
                   f"{r['true_dpsnr']:+.2f}"]  # fmt: skip
            rows.append(row)
            print(" | ".join(row), f"({r['skipped']} video(s) not registered)", flush=True)
    header = ["class @ noise sd", "estimate / true: one frame", "video", "network alone",
              "+ projection, one-frame estimate (default)", "+ projection, video estimate",
              "+ projection, true level"]  # fmt: skip
    table = markdown_table(header, rows)
    print(table)
    write_json(
        RESULTS / f"video_noise_{args.split}.json",
        {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "seconds": time.perf_counter() - t0, "frames": list(FRAMES), "cells": cells,
         "table": table},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
