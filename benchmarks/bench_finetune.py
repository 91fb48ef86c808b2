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
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, parse_settings, write_json  # noqa: E402
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
        "--ensemble",
        type=int,
        default=1,
        metavar="N",
        help="score with super_resolve's self-ensemble of N (default 1, the network once, as "
        "the committed results; 4 is super_resolve's default)",
    )
    args = parser.parse_args(argv)
    import torch

    from napari_cycsr import pretrained
    from napari_cycsr.training import train

    torch.set_num_threads(1)
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


if __name__ == "__main__":
    sys.exit(main())
