"""The adversarial term on top of the shipped model: which recipe, and does the domain matter?

Issue item 2. Every arm fine-tunes the shipped ``default`` model (``init=``) for
``--iterations`` on the LR images of the benchmark's training images (brick, coins; noise sd
0.01; their HR is used only as ``T_pair``), with the loss settings the model carries
(``train(init=)``: ``config.fine_tune_settings``), held to the initial model's output
(``w_anchor``, no ``w_res``: ``--base-set`` changes that), and one adversarial recipe: the
discriminator's loss (bce, hinge, relativistic), what it sees (``adv_highpass``: only the
detail finer than a Gaussian of that many fibre spacings, the band the fibres do not measure),
spectral normalisation, instance noise and the weight ``w_adv``; and one target domain. The
control **no l_adv** is the same fine-tuning with ``w_adv`` 0, so any difference is the
adversarial term's.

Each arm is scored on content-class crops (``--split validation`` to choose a recipe,
``--split test`` to report), at ``--noise`` levels, network + noise-aware projection (the
default of ``super_resolve`` with fibres): PSNR and SSIM (differences to TLI), the spectrum
distance to the truth above the fibre sampling frequency (|dB|, and signed: < 0 blurrier
than the truth), |dGCF| against the truth and the hallucination measure, per crop; paired
t-tests of every arm against the control over all crops. Results in
``benchmarks/results/adversarial_<split>[_<tag>].json``; ``--docs`` writes the table into
docs/method.md (block ``adversarial-<split>``).

::

    # choose a recipe on the validation crops (natural-image target)
    python benchmarks/bench_adversarial.py --split validation --arms select
    # the chosen recipe with every target domain, on the test crops
    python benchmarks/bench_adversarial.py --split test --arms domains --recipe hinge-hp
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CONTENT_CLASSES,
    NATURAL_IMAGES,
    REPO_ROOT,
    TRAIN_IMAGES,
    UNPAIRED_IMAGES,
    fmt_p,
    load_grey,
    markdown_table,
    paired_ttest,
    parse_settings,
    update_markdown,
    write_json,
)
from learning_curves import crop_scores, simulate_set  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
CONTROL = "no l_adv"
#: What the fine-tuning holds on to, whatever the recipe (``--base-set`` overrides).
BASE = {"w_res": 0.0, "w_anchor": 1.0}
#: Adversarial recipes: TrainConfig loss settings (the weight comes from the arm).
RECIPES: dict[str, dict[str, Any]] = {
    # the paper's discriminator on whole images, with the default instance noise
    "bce": {"adv_loss": "bce", "adv_highpass": 0.0, "d_spectral_norm": False, "noise_sigma": 0.2},
    # frequency separation: D sees only detail below half a fibre spacing, no instance
    # noise (it would drown that band), spectral normalisation keeps D smooth instead
    "hinge-hp": {"adv_loss": "hinge", "adv_highpass": 0.5, "d_spectral_norm": True,
                 "noise_sigma": 0.0},  # fmt: skip
    "rel-hp": {"adv_loss": "relativistic", "adv_highpass": 0.5, "d_spectral_norm": True,
               "noise_sigma": 0.0},  # fmt: skip
    "bce-hp": {"adv_loss": "bce", "adv_highpass": 0.5, "d_spectral_norm": True,
               "noise_sigma": 0.0},  # fmt: skip
}
#: Target domain name -> (TrainConfig target, label as in Table 1).
DOMAINS: dict[str, str] = {
    "natural": "T_nat",
    "images": "T_unpair",
    "downscaled": "T_res",
    "paired": "T_pair",
}
#: ``--arms select``: (recipe, w_adv) on the natural target.
SELECT = [("bce", 1e-3), ("bce-hp", 1e-3), ("hinge-hp", 1e-4), ("hinge-hp", 1e-3),
          ("hinge-hp", 1e-2), ("rel-hp", 1e-3)]  # fmt: skip
METRICS = ("proj_dpsnr", "proj_dssim", "proj_spec_abs", "proj_spec", "proj_adgcf", "proj_hall")


def arm_name(recipe: str, w_adv: float, domain: str) -> str:
    return f"{recipe} w_adv {w_adv:g} {DOMAINS[domain]}"


def target_images(domain: str, train: list[Any]) -> list[np.ndarray] | None:
    if domain == "natural":
        return [load_grey(n) for n in NATURAL_IMAGES]
    if domain == "images":
        return [load_grey(n) for n in UNPAIRED_IMAGES]
    if domain == "paired":
        return [s.hr for s in train]
    return None  # downscaled: the LR images themselves


def fine_tune(
    start: Any, train: list[Any], domain: str, settings: dict[str, Any], args: Any
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune ``start``: ``train(init=)`` carries its network and loss settings
    (``config.fine_tune_settings``), :data:`BASE`, ``--base-set`` and the arm's win."""
    from napari_cycsr.config import TRAIN_GROUPS
    from napari_cycsr.training import train as run_training

    t0 = time.perf_counter()
    model = run_training(
        [s.lr for s in train], [s.bundle for s in train], values=[s.values for s in train],
        target=domain, target_images=target_images(domain, train), init=start,
        iterations=args.iterations, batch_size=16, patch=64, learning_rate=args.learning_rate,
        seed=args.seed, device="cpu", threads=1, progress=False, preview_every=0,
        checkpoint_every=0, **{**BASE, **parse_settings(args.base_set), **settings},
    )  # fmt: skip
    used = model.metadata["train_config"]
    losses_used = {k: used[k] for k in (*TRAIN_GROUPS["losses"], "augment_lr") if k in used}
    history = model.metadata.get("loss_history") or {}
    last = {k: float(np.nanmean(v[-10:])) for k, v in history.items() if k != "iteration" and v}
    return model, {"seconds": time.perf_counter() - t0, "settings": losses_used, "losses": last}


def score(model: Any, sets: dict[str, list[Any]]) -> dict[str, dict[str, list[float]]]:
    return {key: crop_scores(model, sims) for key, sims in sets.items()}


def pooled(per: dict[str, dict[str, list[float]]], metric: str, cls: str | None = None) -> list:
    """One metric over every crop of every set (of one class when ``cls`` is given)."""
    return [
        v
        for key, rows in per.items()
        if cls is None or key.split("@")[0] == cls
        for v in rows[metric]
    ]


def report(result: dict[str, Any]) -> str:
    """Markdown: per arm, means over all crops, and paired tests against the control."""
    arms = result["arms"]
    control = arms[CONTROL]["scores"]
    header = ["arm", "ΔPSNR vs TLI (dB)", "ΔSSIM", "spectrum distance (dB)", "signed (dB)",
              "abs dGCF_HR", "hallucination x1e-3", "p: spectrum", "p: abs dGCF",
              "p: PSNR"]  # fmt: skip
    rows = []
    for name, arm in arms.items():
        s = arm["scores"]
        cells = [name]
        for metric, scale, digits in (("proj_dpsnr", 1, 2), ("proj_dssim", 1, 3),
                                      ("proj_spec_abs", 1, 2), ("proj_spec", 1, 2),
                                      ("proj_adgcf", 1, 3), ("proj_hall", 1e3, 2)):  # fmt: skip
            cells.append(f"{scale * np.mean(pooled(s, metric)):+.{digits}f}")
        for metric in ("proj_spec_abs", "proj_adgcf", "proj_dpsnr"):
            if name == CONTROL:
                cells.append("")
                continue
            _, p = paired_ttest(pooled(s, metric), pooled(control, metric))
            diff = np.mean(pooled(s, metric)) - np.mean(pooled(control, metric))
            cells.append(f"{diff:+.3f} ({fmt_p(p)})")
        rows.append(cells)
    tli = control
    rows.append(["TLI (input)", "+0.00", "+0.000", f"{np.mean(pooled(tli, 'tli_spec_abs')):+.2f}",
                 f"{np.mean(pooled(tli, 'tli_spec')):+.2f}",
                 f"{np.mean(pooled(tli, 'tli_adgcf')):+.3f}",
                 f"{1e3 * np.mean(pooled(tli, 'tli_hall')):+.2f}", "", "", ""])  # fmt: skip
    lines = [
        f"`{result['command']}` ({result['date']}; {result['iterations']} fine-tuning "
        f"iterations per arm from the shipped `default`; {result['crops']} crops: "
        f"{', '.join(result['sets'])}). Network + noise-aware projection, mean over every "
        "crop; the p columns: the arm minus the control (paired t-test over the crops).",
        "",
        markdown_table(header, rows),
        "",
        "Per class (ΔPSNR vs TLI in dB / spectrum distance in dB):",
        "",
    ]
    classes = sorted({k.split("@")[0] for k in control})
    per_class = []
    for name, arm in arms.items():
        s = arm["scores"]
        per_class.append([name] + [
            f"{np.mean(pooled(s, 'proj_dpsnr', c)):+.2f} / "
            f"{np.mean(pooled(s, 'proj_spec_abs', c)):.2f}"
            for c in classes
        ])  # fmt: skip
    lines.append(markdown_table(["arm", *classes], per_class))
    return "\n".join(lines)


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The arms of several runs in one result (their control must score the same)."""
    first = results[0]
    out = {**first, "arms": dict(first["arms"]), "command": "; ".join(
        f"`{r['command']}`" for r in results
    ).strip("`")}  # fmt: skip
    for other in results[1:]:
        if other["sets"] != first["sets"] or other.get("split") != first.get("split"):
            raise ValueError("results of different crop sets cannot share a table")
        a = other["arms"][CONTROL]["scores"]
        b = first["arms"][CONTROL]["scores"]
        if not np.allclose(pooled(a, "proj_dpsnr"), pooled(b, "proj_dpsnr")):
            raise ValueError("the controls of these runs differ: not one table")
        out["arms"].update({k: v for k, v in other["arms"].items() if k != CONTROL})

    def order(name: str) -> tuple:  # the control, then by recipe and weight
        if name == CONTROL:
            return ("", 0.0)
        recipe, _, rest = name.partition(" w_adv ")
        return (recipe, float(rest.split()[0]))

    out["arms"] = {k: out["arms"][k] for k in sorted(out["arms"], key=order)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--arms", choices=["select", "domains"], default="select")
    parser.add_argument("--recipe", default="hinge-hp", choices=sorted(RECIPES),
                        help="the recipe of --arms domains")  # fmt: skip
    parser.add_argument("--w-adv", type=float, default=1e-3, help="its weight")
    parser.add_argument("--grid", nargs="+", default=None, metavar="RECIPE:W_ADV",
                        help="arms of --arms select (default: SELECT in this file)")  # fmt: skip
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--count", type=int, default=12, help="crops per class and noise")
    parser.add_argument("--base-set", action="append", default=[], metavar="KEY=VALUE",
                        help="changes to what every arm holds on to (default w_res=0, "
                        "w_anchor=1)")  # fmt: skip
    parser.add_argument("--model", default="default", help="shipped model to start from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="")
    parser.add_argument("--docs", action="store_true", help="write the table into docs/method.md")
    parser.add_argument("--report", nargs="+", type=Path, metavar="JSON",
                        help="no training: one table of the arms of these results files (same "
                        "split and control), written into docs/method.md with --docs")  # fmt: skip
    args = parser.parse_args(argv)
    if args.report:
        merged = merge_results([json.loads(p.read_text(encoding="utf-8")) for p in args.report])
        text = report(merged)
        print(text)
        if args.docs:
            key = f"adversarial-{merged['split']}"
            update_markdown(REPO_ROOT / "docs" / "method.md", {key: text})
        return 0

    import torch

    from napari_cycsr import pretrained
    from napari_cycsr.simulate import simulate_pcle

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    train = [simulate_pcle(load_grey(n), noise=0.01, seed=args.seed * 1000 + i)
             for i, n in enumerate(TRAIN_IMAGES)]  # fmt: skip
    sets = {
        f"{cls}@{noise:g}": simulate_set(f"{cls}:{args.split}", noise, 128, args.count, args.seed)
        for cls in CONTENT_CLASSES
        for noise in args.noise
    }
    if args.arms == "select":
        grid = SELECT
        if args.grid:
            grid = [(g.split(":")[0], float(g.split(":")[1])) for g in args.grid]
            unknown = sorted({r for r, _ in grid} - set(RECIPES))
            if unknown:
                parser.error(f"--grid: unknown recipe(s) {unknown}; known: {sorted(RECIPES)}")
        arms = [(CONTROL, "natural", {"w_adv": 0.0})] + [
            (arm_name(r, w, "natural"), "natural", {**RECIPES[r], "w_adv": w}) for r, w in grid
        ]
    else:
        recipe = {**RECIPES[args.recipe], "w_adv": args.w_adv}
        arms = [(CONTROL, "natural", {"w_adv": 0.0})] + [
            (arm_name(args.recipe, args.w_adv, d), d, recipe) for d in DOMAINS
        ]
    start = pretrained(args.model)
    result: dict[str, Any] = {
        "command": "python benchmarks/bench_adversarial.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "iterations": args.iterations,
        "split": args.split,
        "sets": list(sets),
        "crops": sum(len(v) for v in sets.values()),
        "start": {"model": args.model, "scores": score(start, sets)},
        "arms": {},
    }
    stem = f"adversarial_{args.split}" + (f"_{args.tag}" if args.tag else "")
    for name, domain, settings in arms:
        model, facts = fine_tune(start, train, domain, settings, args)
        result["arms"][name] = {"domain": domain, **facts, "scores": score(model, sets)}
        s = result["arms"][name]["scores"]
        print(
            f"{name:28s} {facts['seconds']:5.0f} s  PSNR {np.mean(pooled(s, 'proj_dpsnr')):+.3f}"
            f"  spec {np.mean(pooled(s, 'proj_spec_abs')):.3f}"
            f" ({np.mean(pooled(s, 'proj_spec')):+.3f})"
            f"  |dGCF| {np.mean(pooled(s, 'proj_adgcf')):.3f}"
            f"  hall {1e3 * np.mean(pooled(s, 'proj_hall')):.2f}e-3  losses {facts['losses']}",
            flush=True,
        )
        write_json(RESULTS / f"{stem}.json", result)  # after every arm: nothing lost
    result["seconds"] = time.perf_counter() - t_start
    write_json(RESULTS / f"{stem}.json", result)
    text = report(result)
    print(text)
    if args.docs:
        update_markdown(REPO_ROOT / "docs" / "method.md", {stem.replace("_", "-"): text})
    return 0


if __name__ == "__main__":
    sys.exit(main())
