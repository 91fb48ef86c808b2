"""Learning from video: the multi-frame cycle consistency against single-frame training.

For every content class (``_common.CONTENT_CLASSES``: texture, smooth, sparse; *test*
crops) and noise level, short pCLE videos are simulated (``simulate_pcle_video``: a random
walk of the scene behind a fixed bundle, fresh noise in every frame). The videos are
registered with ``napari_cycsr.video.register`` (estimated shifts, not the true ones) and
the same network is trained on their LR frames, from scratch, with the same seed and
budget, in several arms:

- ``single``: the do-no-harm single-frame recipe of the single-frame pretrained model
  ``frames`` (``train_pretrained.DEFAULT_RECIPE``: noise-aware ``l_vec``, ``w_res`` 1, LR
  flips);
- ``multi``: the same plus the multi-frame cycle consistency (``w_multi`` 1, neighbours
  within ``multi_frames`` 2 frames);
- ``single, w_res 0`` and ``multi, w_res 0``: the same two without the penalty on the
  change to the input (so the effect of the multi-frame term and of dropping ``w_res`` can
  be told apart);
- ``paired HR^``: the paper's ``T_pair`` built from the video itself: the sliding-window
  fused frames (below) are paired targets of the LR frames, with a pixel loss (``w_pix`` 1)
  beside the cycle consistency; still no true image is seen;
- ``paired HR^ + multi``: both.

No high-resolution image is shown to any arm (natural target images are unpaired); each
model is trained on the LR videos of its class and noise level and scored on them, the
use case of a user who trains on their own video. Scores are mean differences to TLI over
every frame of every video (PSNR / SSIM inside the FOV, against each frame's true scene),
for the network alone and after the noise-aware projection; the sliding-window fused video
(``napari_cycsr.video.fuse_video``, 8 frames, no network) is reported beside them as the
non-learning way to use the same frames. The settings were fixed before the run (no
tuning on these crops).

    python benchmarks/bench_video_training.py                 # full table (~25 min, 2 cores)
    python benchmarks/bench_video_training.py --quick         # one class, one noise level
    python benchmarks/bench_video_training.py --docs          # also write docs/video.md
    python benchmarks/bench_video_training.py --reuse         # only the arms not yet run
    # the noise level the noise-aware l_vec learns with: each frame's own or the video's
    # (docs/video.md, "The noise level it learns with"; the test run came first, the rule
    # was then applied to the validation run)
    python benchmarks/bench_video_training.py --split validation --arms multi \
        'multi, video noise' 'paired HR^ + multi' 'paired HR^ + multi, video noise' \
        --tag noise --threads 1
    python benchmarks/bench_video_training.py --arms multi 'multi, video noise' \
        'paired HR^ + multi' 'paired HR^ + multi, video noise' --tag noise --threads 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CONTENT_CLASSES,
    REPO_ROOT,
    class_crops,
    markdown_table,
    update_markdown,
    write_json,
)
from train_pretrained import DEFAULT_RECIPE  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
DOCS = REPO_ROOT / "docs" / "video.md"

SCENE = 176  # crop side; the frames are FRAME, the rest holds the motion
FRAME = (144, 144)
ARMS: dict[str, dict[str, Any]] = {
    "single": {},
    "single, w_res 0": {"w_res": 0.0},
    "multi": {"w_multi": 1.0, "multi_frames": 2},
    "multi, w_res 0": {"w_multi": 1.0, "multi_frames": 2, "w_res": 0.0},
    "paired HR^": {"target": "paired", "w_pix": 1.0, "w_res": 0.0},
    "paired HR^ + multi": {"target": "paired", "w_pix": 1.0, "w_res": 0.0, "w_multi": 1.0},
    # with the noise of the fibre values estimated from the videos (as video_training does
    # since 2026-12-01: video.estimate_video_noise, at most each frame's own estimate)
    # instead of from each frame alone
    "multi, video noise": {"w_multi": 1.0, "multi_frames": 2, "noise_level": "video"},
    "paired HR^ + multi, video noise": {
        "target": "paired", "w_pix": 1.0, "w_res": 0.0, "w_multi": 1.0, "noise_level": "video",
    },
}  # fmt: skip


def videos(cls: str, noise: float, count: int, frames: int, split: str = "test") -> list[Any]:
    from napari_cycsr.simulate import simulate_pcle_video

    crops = class_crops(cls, split, SCENE, count)
    base = {"test": 40_000, "validation": 50_000}[split]
    return [
        simulate_pcle_video(hr, frames, shape=FRAME, step=0.7, noise=noise, seed=base + 10 * i)
        for i, (_, hr) in enumerate(crops)
    ]


def score(images: list[np.ndarray], vids: list[Any]) -> dict[str, float]:
    """Mean PSNR / SSIM differences to TLI over every frame (inside the FOV)."""
    from napari_cycsr.metrics import psnr, ssim

    dp, ds = [], []
    for out, vid in zip(images, vids):
        kw = {"mask": vid.bundle.fov_mask, "data_range": (0, 1)}
        for t in range(len(vid.frames)):
            hr, lr = vid.frames[t], vid.lr[t]
            dp.append(psnr(out[t], hr, **kw) - psnr(lr, hr, **kw))
            ds.append(ssim(out[t], hr, **kw) - ssim(lr, hr, **kw))
    return {
        "dpsnr": float(np.mean(dp)),
        "dssim": float(np.mean(ds)),
        "min_dpsnr": float(np.min(dp)),
    }


def run_case(
    cls: str, noise: float, args: argparse.Namespace, done: dict[str, Any] | None = None
) -> dict[str, Any]:
    from napari_cycsr.consistency import estimate_noise, project_consistent
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.training import train
    from napari_cycsr.video import estimate_video_noise, fuse_video, register

    vids = videos(cls, noise, args.videos, args.frames, split=args.split)
    regs = [register(v.lr, v.bundle) for v in vids]
    reg_err = float(
        np.median([np.abs(r.shifts - v.shifts).max(axis=1).mean() for r, v in zip(regs, vids)])
    )
    out: dict[str, Any] = {"class": cls, "noise": noise, "registration_error_px": reg_err}
    fused = [fuse_video(v.lr, v.bundle, r, window=8) for v, r in zip(vids, regs)]
    out["fused"] = score(fused, vids)
    # --held-out: train on other scenes (the class's validation crops), score on these
    train_vids, train_regs, train_fused = vids, regs, fused
    if args.held_out:
        if args.split != "test":
            raise SystemExit("--held-out trains on the validation crops and scores on the test")
        train_vids = videos(cls, noise, args.videos, args.frames, split="validation")
        train_regs = [register(v.lr, v.bundle) for v in train_vids]
        train_fused = [
            fuse_video(v.lr, v.bundle, r, window=8) for v, r in zip(train_vids, train_regs)
        ]
    for arm, extra in ARMS.items():
        if args.arms and arm not in args.arms:
            continue
        if done is not None and arm in done:  # --reuse: the same settings, run before
            out[arm] = done[arm]
            continue
        recipe = {**DEFAULT_RECIPE, "target": "natural", "batch_size": args.batch, "patch": 48}
        recipe.update(extra)
        noise_levels = None
        if recipe.get("noise_level") == "video":  # per video, as video_training finds it
            del recipe["noise_level"]
            noise_levels = [
                min(estimate_video_noise(v.values, v.bundle, r, combine=False),
                    estimate_noise(v.values, v.bundle, pooled=True))
                for v, r in zip(train_vids, train_regs)
            ]  # fmt: skip
        paired = train_fused if recipe["target"] == "paired" else None
        t0 = time.perf_counter()
        model = train(
            [v.lr for v in train_vids],
            [v.bundle for v in train_vids],
            values=[v.values for v in train_vids],
            registration=train_regs,
            target_images=paired,
            noise_levels=noise_levels,
            iterations=args.iterations,
            device="cpu",
            threads=args.threads,
            progress=False,
            preview_every=0,
            checkpoint_every=0,
            **recipe,
        )
        seconds = time.perf_counter() - t0
        nets, projs = [], []
        for v in vids:
            sr = super_resolve(
                model, v.lr, device="cpu", mask=v.bundle.fov_mask, threads=args.threads
            )
            nets.append(sr)
            projs.append(
                np.stack([project_consistent(s, v.bundle, v.values[t]) for t, s in enumerate(sr)])
            )
        out[arm] = {"net": score(nets, vids), "proj": score(projs, vids), "seconds": seconds}
        print(
            f"{cls:8s} sd {noise:<5g} {arm:15s} net {out[arm]['net']['dpsnr']:+.2f} dB "
            f"proj {out[arm]['proj']['dpsnr']:+.2f} dB  ({seconds:.0f} s)",
            flush=True,
        )
    print(f"{cls:8s} sd {noise:<5g} fused video     {out['fused']['dpsnr']:+.2f} dB", flush=True)
    return out


def run_real(args: argparse.Namespace) -> str:
    """The real 12-frame USAF video: train on frames 1-6, score frames 7-12.

    Each scored frame's reference is HR^ fused from the *other* scored frames only
    (``leave_one_out`` with frames 1-6 excluded), so no measurement the networks were trained
    on enters a reference; the scene (the same target, moved) is shared, as in any video.
    """
    from types import SimpleNamespace

    from bench_pretrained import _video
    from napari_cycsr import pretrained
    from napari_cycsr.consistency import project_consistent
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.metrics import psnr, ssim
    from napari_cycsr.training import train
    from napari_cycsr.video import leave_one_out
    from napari_cycsr.workflows import train_video

    values, bundle, _, reg = _video()
    tli = np.stack([bundle.reconstruct(v) for v in values]).astype(np.float32)
    half = len(values) // 2
    first = SimpleNamespace(
        shifts=reg.shifts[:half], angles=reg.angles[:half], good=reg.good[:half]
    )
    recipe = {**DEFAULT_RECIPE, "target": "natural", "batch_size": args.batch, "patch": 48}
    common = {"iterations": args.iterations, "device": "cpu", "threads": args.threads,
              "progress": False, "preview_every": 0, "checkpoint_every": 0}  # fmt: skip
    models = {"pretrained (no training)": pretrained()}
    models["single (frames 1-6)"] = train(
        tli[:half], bundle, values=values[:half], **recipe, **common
    )
    video_recipe = {k: v for k, v in recipe.items() if k != "target"}
    video_recipe["w_res"] = 0.0
    models["paired HR^ + multi (frames 1-6)"] = train_video(
        tli[:half], bundle, registration=first, values=values[:half], **video_recipe, **common
    )
    rows: dict[str, list[tuple[float, float]]] = {"TLI": []}
    for t in range(half, len(values)):
        if not reg.good[t]:
            continue
        ref, info = leave_one_out(values, bundle, reg, t, exclude=list(range(half)),
                                  return_info=True)  # fmt: skip
        mask = bundle.fov_mask & (np.rint(np.asarray(info.coverage)) >= len(info.frames))
        outputs = {"TLI": tli[t]}
        for name, model in models.items():
            net = super_resolve(model, tli[t], device="cpu", mask=bundle.fov_mask,
                                spacing=bundle.spacing, threads=args.threads)  # fmt: skip
            outputs[name] = net
            outputs[name + " + projection"] = project_consistent(net, bundle, values[t])
        for name, img in outputs.items():
            scores = (psnr(img, ref, mask=mask), ssim(img, ref, mask=mask))
            rows.setdefault(name, []).append(scores)
    base = np.asarray(rows["TLI"])
    table = []
    for name, scores in rows.items():
        arr = np.asarray(scores)
        d = arr - base
        table.append([
            name, f"{np.median(arr[:, 0]):.2f}", f"{np.median(arr[:, 1]):.3f}",
            "" if name == "TLI" else f"{np.median(d[:, 0]):+.2f} ({d[:, 0].min():+.2f})",
            "" if name == "TLI" else f"{np.median(d[:, 1]):+.3f} ({d[:, 1].min():+.3f})",
        ])  # fmt: skip
    header = ["method", "PSNR (dB)", "SSIM", "ΔPSNR vs TLI, median (worst)", "ΔSSIM (worst)"]
    return "\n".join([
        "Command: `python benchmarks/bench_video_training.py --real` "
        f"({time.strftime('%Y-%m-%d')}; "
        f"{args.iterations} iterations of the tiny network). The real USAF video "
        f"(`super_res/`, {len(values)} frames, {bundle.n_fibres} cores): trained on frames "
        f"1-{half}, scored on frames {half + 1}-{len(values)} (registered ones), each against "
        "HR^ fused from the other scored frames only; medians over the scored frames.",
        "",
        markdown_table(header, table),
    ])  # fmt: skip


def report(res: dict[str, Any]) -> str:
    arms = [arm for arm in ARMS if all(arm in c for c in res["cases"])]
    header = ["class", "noise sd", "reg. error (px)", *arms, "fused video (8 frames)"]
    psnr_rows, ssim_rows = [], []
    for case in res["cases"]:
        row = [case["class"], f"{case['noise']:g}", f"{case['registration_error_px']:.2f}"]
        p_row, s_row = list(row), list(row)
        for arm in arms:
            a = case[arm]
            p_row.append(f"{a['net']['dpsnr']:+.2f} · {a['proj']['dpsnr']:+.2f}")
            s_row.append(f"{a['net']['dssim']:+.3f} · {a['proj']['dssim']:+.3f}")
        p_row.append(f"{case['fused']['dpsnr']:+.2f}")
        s_row.append(f"{case['fused']['dssim']:+.3f}")
        psnr_rows.append(p_row)
        ssim_rows.append(s_row)
    worst = {
        arm: min(min(c[arm]["net"]["min_dpsnr"], c[arm]["proj"]["min_dpsnr"]) for c in res["cases"])
        for arm in arms
    }
    lines = [
        f"Command: `python benchmarks/bench_video_training.py{res['flags']}` ({res['date']}; "
        f"{res['iterations']} iterations of the tiny network, batch {res['batch']}, "
        f"{res['videos']} videos x {res['frames']} frames of {FRAME[0]} x {FRAME[1]} px per row, "
        "estimated registration, "
        + (
            "trained on videos of the validation crops, scored on the test crops' videos"
            if res.get("held_out")
            else f"trained and scored on the {res.get('split', 'test')} crops' videos"
        )
        + "). Each cell: the mean over every frame against TLI, network alone · after the "
        "noise-aware projection.",
        "",
        "ΔPSNR (dB):",
        "",
        markdown_table(header, psnr_rows),
        "",
        "ΔSSIM:",
        "",
        markdown_table(header, ssim_rows),
        "",
        "Worst single frame (ΔPSNR, network or projection): "
        + ", ".join(f"{arm} {v:+.2f} dB" for arm, v in worst.items())
        + ".",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", nargs="+", default=list(CONTENT_CLASSES))
    parser.add_argument("--noise", nargs="+", type=float, default=[0.01, 0.03])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="texture at sd 0.01 only")
    parser.add_argument("--docs", action="store_true", help="write the table to docs/video.md")
    parser.add_argument(
        "--held-out", action="store_true",
        help="train on videos of the class's validation crops and score on the test videos "
        "(other scenes); results in video_training_heldout.json, docs block "
        "video-training-heldout",
    )  # fmt: skip
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), help="only these arms")
    parser.add_argument(
        "--real", action="store_true",
        help="only the real USAF video: train on frames 1-6, score 7-12 (docs block "
        "video-training-real)",
    )  # fmt: skip
    parser.add_argument(
        "--reuse", action="store_true",
        help="keep the arms of benchmarks/results/video_training.json run with the same "
        "settings; run only the others",
    )  # fmt: skip
    parser.add_argument("--tag", default="", help="suffix of the results file")
    parser.add_argument(
        "--split", choices=("test", "validation"), default="test",
        help="the crops whose videos are trained and scored on (validation: to choose a "
        "setting without looking at the test crops)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.real:
        text = run_real(args)
        print(text)
        if args.docs:
            update_markdown(DOCS, {"video-training-real": text})
        return 0
    if args.quick:
        args.classes, args.noise = ["texture"], [0.01]
    earlier: dict[tuple[str, float], Any] = {}
    stem = "video_training_heldout" if args.held_out else "video_training"
    stem += "_validation" if args.split == "validation" else ""
    stem += f"_{args.tag}" if args.tag else ""
    saved = RESULTS / f"{stem}.json"
    if args.reuse and saved.is_file():
        old = json.loads(saved.read_text())
        keys = ("iterations", "batch", "videos", "frames")
        same = all(old.get(k) == getattr(args, k) for k in keys)
        if same:
            earlier = {(c["class"], c["noise"]): c for c in old["cases"]}
    cases = [run_case(c, n, args, earlier.get((c, n))) for c in args.classes for n in args.noise]
    skip = ("--docs", "--reuse")
    flags = shlex.join(a for a in (argv if argv is not None else sys.argv[1:]) if a not in skip)
    res = {
        "cases": cases,
        "iterations": args.iterations,
        "batch": args.batch,
        "videos": args.videos,
        "frames": args.frames,
        "date": time.strftime("%Y-%m-%d"),
        "flags": f" {flags}" if flags else "",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    res["held_out"] = bool(args.held_out)
    res["split"] = args.split
    write_json(saved, res)
    text = report(res)
    print(text)
    if args.docs:
        update_markdown(DOCS, {stem.replace("_", "-"): text})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
