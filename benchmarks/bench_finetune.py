"""Fine-tuning a shipped model on single frames: does it keep what it learned?

For each content class and two noise levels (0.01, 0.05), the 12 *validation* crops are
simulated (as a user's own frames, no ground truth shown), the pretrained model is scored on
them as it is, fine-tuned on their LR images alone (``train(..., init=model)`` with the
loss settings it carries, ``config.fine_tune_settings``, plus ``--set`` overrides; batch 16,
64 px patches, learning rate 3e-4, one thread) and scored again. Scores: ΔPSNR (dB) of network +
noise-aware projection against TLI, mean over the crops. Results in
``benchmarks/results/finetune_<model>[_<tag>].json``.

::

    python benchmarks/bench_finetune.py --model default --iterations 300
    python benchmarks/bench_finetune.py --model default --iterations 300 --set w_res=0 --tag wres0
    python benchmarks/bench_finetune.py --model frames --iterations 300
    python benchmarks/bench_finetune.py --model default --iterations 300 \\
        --set w_res=0 --set w_anchor=1 --tag anchor
    # real frames: fine-tune on USAF frames 1-6 (TLI) as single frames (once per anchor
    # weight and spacing) and as one video, score frames 7-12 against HR^ fused from the
    # other scored frames (docs/pretrained.md)
    python benchmarks/bench_finetune.py --model default --iterations 300 --real \\
        --anchors 1 10 --spacing model frames --video --ensemble 4
    # the adversarial term on real frames: each fine-tuning without and with it
    python benchmarks/bench_finetune.py --model default --iterations 300 --real \\
        --anchors 1 --adv 5e-5 5e-4 --ensemble 4 --tag adv
    # ... with other seeds, then the runs side by side (docs/method.md)
    python benchmarks/bench_finetune.py --model default --iterations 300 --real \\
        --anchors 1 --adv 2e-4 5e-4 --ensemble 4 --set seed=1 --tag adv-seed1
    python benchmarks/bench_finetune.py --table benchmarks/results/finetune_real_default_adv*.json
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, markdown_table, parse_settings, write_json  # noqa: E402
from bench_adversarial import RECIPES  # noqa: E402
from learning_curves import score_set, simulate_set  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
CASES = [(c, n) for c in ("texture", "smooth", "sparse") for n in (0.01, 0.05)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="shipped model name")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tag", default="", help="suffix of the results file")
    parser.add_argument(
        "--real",
        action="store_true",
        help="fine-tune on the real USAF video's frames 1-6 (TLI of their core values) and "
        "score frames 7-12 against their leave-one-out HR^ (results finetune_real_<model>.json)",
    )
    parser.add_argument(
        "--anchors",
        type=float,
        nargs="+",
        default=None,
        metavar="W",
        help="with --real: one fine-tuning per w_anchor value (default: the carried one)",
    )
    parser.add_argument(
        "--spacing",
        nargs="+",
        choices=("model", "frames"),
        default=["model"],
        help="with --real: fine-tune at the model's fibre spacing (frames resampled to it, "
        "train()'s default) and/or at the frames' own (fibre_spacing=None, as before "
        "2026-12-01); one fine-tuning per choice and anchor",
    )
    parser.add_argument(
        "--video",
        action="store_true",
        help="with --real: also fine-tune on frames 1-6 as one video (train_video: registered, "
        "fused targets, multi-frame consistency; the model's own objective)",
    )
    parser.add_argument(
        "--adv",
        type=float,
        nargs="+",
        default=[],
        metavar="W",
        help="with --real: each fine-tuning also with the adversarial recipe of docs/method.md "
        "(hinge loss, high-pass discriminator, spectral norm, no instance noise) at each "
        "w_adv W, to tell what the adversarial term does to real frames",
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=1,
        metavar="N",
        help="score with super_resolve's self-ensemble of N (default 1, the network once, as "
        "the committed results; 4 is super_resolve's default)",
    )
    parser.add_argument(
        "--table",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="print the --real results of several runs (e.g. seeds) side by side as Markdown, "
        "the methods all of them scored, and stop",
    )
    args = parser.parse_args(argv)
    if args.table:
        print(seeds_table(args.table))
        return 0
    import torch

    from napari_cycsr import pretrained
    from napari_cycsr.training import train

    torch.set_num_threads(1)
    if args.real:
        return run_real(args, argv)
    rows = []
    for cls, noise in CASES:
        sims = simulate_set(f"{cls}:validation", noise, 128, 12, 0)
        start = pretrained(args.model)
        t0 = time.perf_counter()
        # train(init=) carries the model's network and loss settings; --set wins
        tuned = train(
            [s.lr for s in sims], [s.bundle for s in sims], values=[s.values for s in sims],
            init=start, iterations=args.iterations, batch_size=16, patch=64,
            learning_rate=3e-4, device="cpu", threads=1, progress=False, preview_every=0,
            checkpoint_every=0, **parse_settings(args.set),
        )  # fmt: skip
        seconds = time.perf_counter() - t0  # the fine-tuning alone
        used = tuned.metadata["train_config"]
        row = {
            "class": cls, "noise": noise,
            "start": score_set(start, sims, ensemble=args.ensemble)["proj_dpsnr"],
            "fine_tuned": score_set(tuned, sims, ensemble=args.ensemble)["proj_dpsnr"],
            "seconds": seconds, "w_res": used["w_res"], "w_anchor": used["w_anchor"],
            "ensemble": args.ensemble,
        }  # fmt: skip
        rows.append(row)
        print(
            f"{args.model} {cls:8s} sd {noise:<5g} as shipped {row['start']:+.2f} dB, after "
            f"{args.iterations} it {row['fine_tuned']:+.2f} dB (w_res {row['w_res']}, "
            f"w_anchor {row['w_anchor']})",
            flush=True,
        )
    stem = f"finetune_{args.model}" + (f"_{args.tag}" if args.tag else "")
    command = "python benchmarks/bench_finetune.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    write_json(RESULTS / f"{stem}.json", {"command": command, "rows": rows})
    return 0


def seeds_table(paths: list[Path]) -> str:
    """``--real`` results of several runs side by side (one column per run, labelled by its
    ``--set seed=``, default 0): against the 11-frame reference, the median ΔPSNR over the
    scored frames (worst), the spectrum distance in the band the model fills (signed) and the
    correlation of the detail each method adds to the TLI with the reference's."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    seeds = []
    for run in runs:
        found = re.findall(r"--set[ =]seed=(\d+)", run["command"])
        seeds.append(int(found[-1]) if found else 0)
    methods = [r["method"] for r in runs[0]["rows"]]
    common = [m for m in methods if all(m in {r["method"] for r in run["rows"]} for run in runs)]
    header = ["method"] + [
        f"seed {s}: ΔPSNR vs TLI, median (worst); spectrum, model band (signed); detail r"
        for s in seeds
    ]
    rows = []
    for method in common:
        row = [method]
        for run in runs:
            r = next(x for x in run["rows"] if x["method"] == method)
            corr = r.get("detail_correlation_median", float("nan"))
            row.append(
                f"{r['dpsnr_median']:+.2f} ({r['dpsnr_worst']:+.2f}); "
                f"{r['spectrum_model_median']:.2f} ({r['spectrum_model_signed_median']:+.2f}); "
                + ("-" if math.isnan(corr) else f"{corr:+.2f}")
            )
        rows.append(row)
    files = ", ".join(f"`{Path(p).name}`" for p in paths)
    return f"From {files}.\n\n" + markdown_table(header, rows)


def run_real(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Fine-tune on real frames 1-6, score 7-12 (medians over the frames, against TLI)."""
    import numpy as np

    from bench_pretrained import _video, score_real_frame
    from napari_cycsr import pretrained
    from napari_cycsr.training import train

    values, bundle, _, reg = _video()
    train_frames, score_frames = range(0, 6), range(6, values.shape[0])
    lr = [bundle.reconstruct(values[t]) for t in train_frames]
    models = {"as shipped": pretrained(args.model)}
    arms = [
        (w, where, adv)
        for where in args.spacing
        for w in (args.anchors or [None])
        for adv in [None, *args.adv]
    ]
    for w, where, adv in arms:
        extra = {} if w is None else {"w_anchor": w}
        label = "fine-tuned" + (f", w_anchor {w:g}" if w is not None else "")
        if len(args.spacing) > 1 or where != "model":
            label += ", at the frames' spacing" if where == "frames" else ", at the model's spacing"
        if adv is not None:  # the adversarial recipe docs/method.md picked on simulated crops
            extra.update(RECIPES["hinge-hp"], w_adv=adv)
            label += f", l_adv hinge-hp {adv:g}"
        t0 = time.perf_counter()
        models[label] = train(
            lr, [bundle] * len(lr), values=[values[t] for t in train_frames],
            init=pretrained(args.model), iterations=args.iterations, batch_size=16, patch=64,
            learning_rate=3e-4, device="cpu", threads=1, progress=False, preview_every=0,
            checkpoint_every=0, fibre_spacing="auto" if where == "model" else None,
            **{**parse_settings(args.set), **extra},
        )  # fmt: skip
        print(f"{label} in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.video:
        from napari_cycsr.workflows import train_video

        # frames 1-6 as one video: registered here, fused targets, multi-frame term, the
        # model's own objective (as `cycsr train --video --init` and the Train widget)
        t0 = time.perf_counter()
        models["fine-tuned on the video"] = train_video(
            np.stack(lr), bundle, values=values[list(train_frames)],
            init=pretrained(args.model), iterations=args.iterations, batch_size=16, patch=64,
            learning_rate=3e-4, device="cpu", threads=1, progress=False, preview_every=0,
            checkpoint_every=0, **parse_settings(args.set),
        )  # fmt: skip
        print(f"fine-tuned on the video in {time.perf_counter() - t0:.0f} s", flush=True)
    # two references per scored frame, neither the truth: HR^ fused from all 11 other frames
    # (the best resolved; it holds frames 1-6, which the fine-tunings learned from) and HR^
    # fused from the other *scored* frames only (5 frames: no measurement a model learned
    # from enters it, but less resolved, so it favours smooth output)
    references = {"all": (), "scored": list(train_frames)}
    per_frame: dict[str, dict[int, Any]] = {name: {} for name in references}
    for t in score_frames:
        for name, exclude in references.items():
            per_frame[name][t], _, _ = score_real_frame(
                {k: (m, {"ensemble": args.ensemble}) for k, m in models.items()}, values,
                bundle, reg, t, exclude=exclude,
            )  # fmt: skip
    rows = []
    for method in next(iter(per_frame["all"].values())):
        row: dict[str, Any] = {"method": method}
        line = f"{method:58s}"
        for name in references:
            frames = per_frame[name]
            d = [frames[t][method]["psnr"] - frames[t]["TLI"]["psnr"] for t in score_frames]
            q = [frames[t][method]["ssim"] - frames[t]["TLI"]["ssim"] for t in score_frames]
            key = "" if name == "all" else f"{name}_"
            row.update({f"{key}dpsnr_median": float(np.median(d)),
                        f"{key}dpsnr_worst": float(np.min(d)),
                        f"{key}dssim_median": float(np.median(q))})  # fmt: skip
            # how real it looks against the reference: spectrum distance above the fibres'
            # band (dB; signed: + more power than the reference), added detail where it is flat
            # and whether the detail it adds to the TLI is the reference's (in the model band)
            measures = ("spectrum", "spectrum_signed", "spectrum_model", "spectrum_model_signed",
                        "hallucination", "detail_correlation")  # fmt: skip
            for measure in measures:
                row[f"{key}{measure}_median"] = float(
                    np.median([frames[t][method][measure] for t in score_frames])
                )
            line += f"  {name}: ΔPSNR {np.median(d):+.2f} ({np.min(d):+.2f})"
            line += f" ΔSSIM {np.median(q):+.3f}"
            line += f" spec {row[f'{key}spectrum_median']:.2f}"
            line += f" ({row[f'{key}spectrum_signed_median']:+.2f})"
            line += f" model band {row[f'{key}spectrum_model_median']:.2f}"
            line += f" ({row[f'{key}spectrum_model_signed_median']:+.2f})"
            line += f" hall {row[f'{key}hallucination_median']:.4f}"
            line += f" detail r {row[f'{key}detail_correlation_median']:+.2f}"
        rows.append(row)
        print(line, flush=True)
    command = "python benchmarks/bench_finetune.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    write_json(
        RESULTS / f"finetune_real_{args.model}{'_' + args.tag if args.tag else ''}.json",
        {"command": command, "train_frames": [t + 1 for t in train_frames],
         "references": {"dpsnr_*": "HR^ fused from the 11 other frames",
                        "scored_dpsnr_*": "HR^ fused from the other scored frames only"},
         "score_frames": [t + 1 for t in score_frames], "ensemble": args.ensemble,
         "rows": rows},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
