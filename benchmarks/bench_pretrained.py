"""A shipped pretrained model, as it ships (no fine-tuning): the test set and the real video.

Two parts, each writing a section of ``docs/pretrained.md`` and a JSON file in
``benchmarks/results/``:

* ``--classes``: Table 3 of ``run_experiments.py`` for the pretrained model alone: the *test*
  crops of every content class (texture, smooth, sparse; 12 each, 128 px) at every noise
  level, simulated with the benchmark's seeds; rows TLI, TLI + projection (and its exact and
  true-noise variants), Wiener, the pretrained network, and the network + projection, all
  in the same run. The verdict checks the issue's aims for the default result (network +
  noise-aware projection): at least +1 dB over TLI and +0.3 dB over TLI + projection on
  every class, and never significantly worse than TLI on any class and noise level.
* ``--real``: the real 12-frame USAF video (``../shared/data/pyfibrebundle/super_res``, cores
  detected on ``usaf1_background.tif``, values flat-fielded by it). For each frame ``t``,
  the reference is HR^ fused from the *other* eleven frames (``video.leave_one_out``);
  TLI, TLI + projection, the network and the network + projection of frame ``t`` alone are
  scored against it (PSNR, SSIM inside the field of view where every other frame
  contributed), with the gradient ratio of the added detail (``metrics.gradient_ratio``,
  about 1 = no direction). The artefact checks of ``bench_real.py`` (stripes at the
  camera-frame border, the fixed pattern's amplification) run on the same model.

::

    python benchmarks/bench_pretrained.py --classes --real        # every shipped model, docs
    python benchmarks/bench_pretrained.py --real --no-docs        # print only
    python benchmarks/bench_pretrained.py --classes --real --name default frames \
        --model "supervised ceiling=runs/pretrained/supervised/snapshot_020000.safetensors"

Several models (``--name`` with several shipped names, every shipped model by default;
``--model LABEL=FILE`` for model files) are scored side by side in the same run, against the
same baselines; the results go to ``pretrained_compare_<part>.json`` (``pretrained_<name>_
<part>.json`` for a single model) and the docs blocks ``pretrained-compare-*``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CONTENT_CLASSES,
    NOISE_LEVELS,
    REPO_ROOT,
    SHARED_DATA,
    markdown_table,
    paired_ttest,
    update_markdown,
    write_json,
)

RESULTS = REPO_ROOT / "benchmarks" / "results"
DOCS = REPO_ROOT / "docs" / "pretrained.md"
FIGURE = REPO_ROOT / "docs" / "images" / "pretrained_compare_real.png"
#: The issue's aims for the default result (network + noise-aware projection), in dB.
AIM_OVER_TLI = 1.0
AIM_OVER_PROJECTION = 0.3


def real_methods(labels: list[str]) -> list[str]:
    """Rows of the real-video table: the baselines, then each model and its projection."""
    return ["TLI", "TLI + projection"] + [m for lab in labels for m in (lab, f"{lab} + projection")]


#: Rows of the real-video table for one model called "network", in order.
REAL_METHODS = tuple(real_methods(["network"]))


def aims(per: dict[str, Any], net: str) -> tuple[list[list[str]], dict[str, bool]]:
    """Per class (mean over its crops and noise levels): the default result against TLI and
    against TLI + projection, and whether the issue's aims hold.

    Returns the table rows and ``{"over TLI", "over projection", "never worse"}`` -> met.
    """
    result = f"{net} + projection"
    rows = []
    met = {"over TLI": True, "over projection": True, "never worse": True}
    for cls in CONTENT_CLASSES:
        d_tli, d_proj, d_net, worse = [], [], [], []
        for noise in NOISE_LEVELS:
            r = per[f"{cls}@{noise:g}"]["methods"]
            tli = np.asarray(r["TLI (input)"]["psnr"])
            res = np.asarray(r[result]["psnr"])
            d_tli.append(np.mean(res - tli))
            d_proj.append(np.mean(res - np.asarray(r["TLI + projection"]["psnr"])))
            d_net.append(np.mean(np.asarray(r[net]["psnr"]) - tli))
            for metric in ("psnr", "ssim"):
                a, b = np.asarray(r[result][metric]), np.asarray(r["TLI (input)"][metric])
                _, p = paired_ttest(a, b)
                if np.mean(a - b) < 0 and np.isfinite(p) and p < 0.05:
                    worse.append(f"{metric.upper()} at {noise:g}")
        over_tli, over_proj = float(np.mean(d_tli)), float(np.mean(d_proj))
        met["over TLI"] &= over_tli >= AIM_OVER_TLI
        met["over projection"] &= over_proj >= AIM_OVER_PROJECTION
        met["never worse"] &= not worse
        rows.append(
            [
                cls,
                f"{float(np.mean(d_net)):+.2f}",
                f"{over_tli:+.2f}",
                f"{over_proj:+.2f}",
                ", ".join(worse) if worse else "no",
            ]
        )
    return rows, met


def true_noise_report(per: dict[str, Any], labels: list[str]) -> str:
    """What a known noise level gives the projection: estimated against true, per cell."""
    header = ["class @ noise sd", "estimated / true noise", "TLI + projection (est. / true)"]
    header += [f"`{lab}` + projection (est. / true)" for lab in labels]
    rows = []

    def gain(m: dict[str, Any], name: str) -> str:
        return f"{np.mean(m[name]['psnr']) - np.mean(m['TLI (input)']['psnr']):+.2f}"

    for key, cell in per.items():
        m = cell["methods"]
        tli = f"{gain(m, 'TLI + projection')} / {gain(m, 'TLI + projection (true noise)')}"
        row = [key, f"{np.median(cell['noise_estimate_ratio']):.1f}x", tli]
        row += [
            f"{gain(m, f'{lab} + projection')} / {gain(m, f'{lab} + projection (true noise)')}"
            for lab in labels
        ]
        rows.append(row)
    return (
        "ΔPSNR (dB) against TLI, mean over the crops, of the noise-aware projection with the "
        "noise level estimated from each crop's fibre values (the default) and given the "
        "simulation's true level; the estimated / true ratio is the median over the crops.\n\n"
        + markdown_table(header, rows)
    )


def run_classes_part(
    models: dict[str, Any], seed: int, log: Any, *, true_noise: bool = False
) -> tuple[str, dict[str, Any]]:
    import run_experiments as rx

    labels = list(models)
    net = labels[0]
    budget = rx.MODES["default"]
    sims = rx.class_sims(budget, seed)
    per = rx.run_classes(sims, models, "cpu", log, true_noise=true_noise)
    if true_noise:
        return true_noise_report(per, labels), {"per": per}
    what = ", ".join(f"`{lab}`" for lab in labels)
    intro = (
        f"**Table 3 for {what} as shipped or saved (no fine-tuning).** {budget.class_count} test "
        "crops (128 px) per content class, each simulated at every noise level with the "
        f"benchmark's seeds (`run_experiments.class_sims`, seed {seed}); the model never saw "
        'them (docs/pretrained.md, "How they were trained"). "+ projection": noise-aware '
        "projection onto the crop's fibre values with the noise estimated from them (the "
        '`super_resolve` default with fibres); "+ exact projection": the exact fit; "(true '
        'noise)": the noise-aware projection given the true noise level. Cells: ΔPSNR (dB) / '
        "ΔSSIM against TLI, mean over the crops (TLI row: absolute values)."
    )
    md = rx.class_report(per, net, labels, intro=intro)
    md += (
        "\n\nThe issue's aims for the default result (network + projection), per class "
        "(ΔPSNR in dB, mean over the crops and the four noise levels; worse = lower mean "
        "than TLI with p < 0.05 in a paired t-test at some noise level):"
    )
    all_met = {}
    for label in labels:
        rows, met = aims(per, label)
        all_met[label] = met
        md += (
            (f"\n\n`{label}`:" if len(labels) > 1 else "")
            + "\n\n"
            + markdown_table(
                [
                    "class",
                    "network alone vs TLI",
                    f"+ projection vs TLI (aim ≥ +{AIM_OVER_TLI:g})",
                    f"+ projection vs TLI + projection (aim ≥ +{AIM_OVER_PROJECTION:g})",
                    "worse than TLI",
                ],
                rows,
            )
            + "\n\nAims met: "
            + "; ".join(f"{k}: {'yes' if v else '**no**'}" for k, v in met.items())
            + "."
        )
    return md, {"per": per, "aims": all_met if len(labels) > 1 else all_met[net]}


def _video() -> tuple[np.ndarray, Any, np.ndarray, Any]:
    """Core values of the 12 USAF frames, the bundle and the registration."""
    from napari_cycsr._imageio import read_image
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.video import read_video, register

    raw = read_video(SHARED_DATA / "super_res")
    bg = read_image(SHARED_DATA / "usaf1_background.tif")
    bundle = FibreBundle.detect(bg)
    values = bundle.core_values(raw, background=bg)
    return values, bundle, raw, register(raw, bundle, background=bg)


def score_real_frame(
    models: Any, values: np.ndarray, bundle: Any, reg: Any, t: int, exclude: Any = ()
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray], float]:
    """Every method for frame ``t`` against the leave-one-out HR^ of frame ``t``.

    ``exclude``: frames kept out of the reference too (e.g. those a model was trained on).

    ``models``: ``{label: model or (model, super_resolve options)}`` (one model alone is
    labelled "network"). Returns
    ``{method: {"psnr", "ssim", "gradient_ratio", "spectrum", "spectrum_signed",
    "spectrum_model", "spectrum_model_signed", "hallucination", "detail_correlation"}}``
    (methods: :func:`real_methods`; the last six against the reference,
    :func:`napari_cycsr.metrics.spectrum_distance`, :func:`~napari_cycsr.metrics.hallucination`
    and :func:`~napari_cycsr.metrics.band_correlation` at the bundle's spacing;
    ``spectrum_model*`` and ``detail_correlation``: only up to the Nyquist frequency of the grid
    the models run on, 0.5 x the zoom ``super_resolve`` resamples the frame by;
    ``detail_correlation``: of the detail a method adds to the TLI with the detail the
    reference has beyond it, NaN for the TLI itself), the
    images (and ``"reference"``), and the fraction of the field of view scored (where every
    other used frame contributed to the reference).
    """
    from napari_cycsr.consistency import project_consistent
    from napari_cycsr.data import spacing_zoom
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.metrics import (
        band_correlation,
        gradient_ratio,
        hallucination,
        psnr,
        spectrum_distance,
        ssim,
    )
    from napari_cycsr.video import leave_one_out

    extra = {"exclude": list(exclude)} if len(exclude) else {}
    ref, info = leave_one_out(values, bundle, reg, t, return_info=True, **extra)
    fov = bundle.fov_mask
    # coverage is resampled onto frame t's grid (11.000001, 10.999999): round it
    mask = fov & (np.rint(np.asarray(info.coverage)) >= len(info.frames))
    if not isinstance(models, dict):
        models = {"network": models}
    tli = bundle.reconstruct(values[t])
    images = {"TLI": tli, "TLI + projection": project_consistent(tli, bundle, values[t])}
    # the band the models can fill: up to the Nyquist frequency of the grid they run on
    zooms = [
        spacing_zoom(m.metadata["fibre_spacing"], bundle.spacing)
        for m in (e[0] if isinstance(e, tuple) else e for e in models.values())
        if isinstance(m.metadata, dict) and m.metadata.get("fibre_spacing")
    ]
    top = 0.5 * min([1.0, *zooms])
    for label, entry in models.items():
        model, options = entry if isinstance(entry, tuple) else (entry, {})
        net = super_resolve(model, tli, device="cpu", mask=fov, spacing=bundle.spacing, **options)
        images[label] = net
        images[f"{label} + projection"] = project_consistent(net, bundle, values[t])
    scores = {}
    for name, img in images.items():
        scores[name] = {
            "psnr": psnr(img, ref, mask=mask),
            "ssim": ssim(img, ref, mask=mask),
            "gradient_ratio": gradient_ratio(img, tli, mask=mask) if name != "TLI" else np.nan,
            "spectrum": spectrum_distance(img, ref, spacing=bundle.spacing, mask=mask),
            "spectrum_signed": spectrum_distance(
                img, ref, spacing=bundle.spacing, mask=mask, signed=True
            ),
            "spectrum_model": spectrum_distance(
                img, ref, spacing=bundle.spacing, mask=mask, max_frequency=top
            ),
            "spectrum_model_signed": spectrum_distance(
                img, ref, spacing=bundle.spacing, mask=mask, signed=True, max_frequency=top
            ),
            "hallucination": hallucination(img, ref, spacing=bundle.spacing, mask=mask),
            "detail_correlation": band_correlation(
                img, ref, spacing=bundle.spacing, base=tli, mask=mask, max_frequency=top
            ),
        }
    return scores, {**images, "reference": ref}, float(mask.sum() / max(1, fov.sum()))


def _figure(
    images: dict[str, np.ndarray], t: int, path: Path, command: str, label: str = "network"
) -> None:
    from matplotlib.figure import Figure

    from napari_cycsr._imageio import atomic_path

    # USAF groups 6 and 7 (bench_video.USAF_ROIS, frame 1's grid)
    crop = (slice(230, 680), slice(430, 850))
    names = ["TLI", label, f"{label} + projection", "reference"]
    fig = Figure(figsize=(2.6 * len(names), 3.2), layout="constrained")
    axes = fig.subplots(1, len(names))
    ref = images["reference"][crop]
    lo, hi = np.percentile(ref, [0.5, 99.5])
    for ax, name in zip(axes, names, strict=True):
        ax.imshow(images[name][crop], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        title = f"leave-one-out HR^ (frames ≠ {t + 1})" if name == "reference" else name
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    title = f"USAF frame {t + 1}, {label} as it ships. Made by `{command}`"
    fig.suptitle("\n".join(textwrap.wrap(title, 170)), fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def run_real_part(
    models: dict[str, Any], frames: list[int], log: Any, command: str, figure: Path | None
) -> tuple[str, dict[str, Any]]:
    import bench_real

    labels = list(models)
    single = len(labels) == 1
    scored = {"network": models[labels[0]]} if single else models
    methods = real_methods(list(scored))
    values, bundle, _, reg = _video()
    log(f"  video: {values.shape[0]} frames, {bundle.n_fibres} cores, spacing {bundle.spacing:.2f}")
    per_frame: dict[int, Any] = {}
    covered = []
    for t in frames:
        scores, images, frac = score_real_frame(scored, values, bundle, reg, t)
        per_frame[t] = scores
        covered.append(frac)
        log(
            f"  frame {t + 1}: "
            + ", ".join(f"{k} {v['psnr']:.2f} dB / {v['ssim']:.3f}" for k, v in scores.items())
        )
        if figure is not None and t == frames[0]:
            _figure(images, t, figure, command, label=list(scored)[0])
    rows = []
    for method in methods:
        psnrs = [per_frame[t][method]["psnr"] for t in frames]
        ssims = [per_frame[t][method]["ssim"] for t in frames]
        d_psnr = [per_frame[t][method]["psnr"] - per_frame[t]["TLI"]["psnr"] for t in frames]
        d_ssim = [per_frame[t][method]["ssim"] - per_frame[t]["TLI"]["ssim"] for t in frames]
        grad = [per_frame[t][method]["gradient_ratio"] for t in frames]
        corr = [per_frame[t][method]["detail_correlation"] for t in frames]
        rows.append(
            [
                method,
                f"{np.median(psnrs):.2f}",
                f"{np.median(ssims):.3f}",
                "" if method == "TLI" else f"{np.median(d_psnr):+.2f} ({np.min(d_psnr):+.2f})",
                "" if method == "TLI" else f"{np.median(d_ssim):+.3f} ({np.min(d_ssim):+.3f})",
                "" if method == "TLI" else f"{np.median(grad):.2f}",
                "" if method == "TLI" else f"{np.median(corr):+.2f}",
            ]
        )
    what = ", ".join(f"`{lab}`" for lab in labels)
    md = (
        f"**{what} on the real USAF video, against leave-one-out HR^.** "
        f"Frames {', '.join(str(t + 1) for t in frames)} of `super_res/` "
        f"({values.shape[0]} frames, {bundle.n_fibres} cores detected on "
        f"`usaf1_background.tif`, spacing {bundle.spacing:.2f} px: the model resamples to its "
        "own spacing); each frame scored alone against HR^ fused from the other "
        f"{values.shape[0] - 1} frames (`video.leave_one_out`), inside the field of view where "
        f"every one of them contributed ({np.median(covered) * 100:.0f} % of it, median). "
        "Medians over the frames; Δ against TLI of the same frame with the worst frame in "
        "brackets; gradient ratio: x/y gradient energy of the detail added to TLI (about 1 = "
        "no preferred direction); detail r: correlation of that detail with the reference's "
        "beyond TLI, in the band the models fill (`metrics.band_correlation`; 1 = the "
        "reference's detail, 0 = unrelated).\n\n"
        + markdown_table(
            [
                "result",
                "PSNR (dB)",
                "SSIM",
                "ΔPSNR vs TLI (worst)",
                "ΔSSIM vs TLI (worst)",
                "gradient ratio",
                "detail r",
            ],
            rows,
        )
    )
    log("  artefacts (bench_real.py)")
    first = models[labels[0]]  # the artefact checks run it with super_resolve's defaults
    first = first[0] if isinstance(first, tuple) else first
    border = bench_real.border_and_streaks(first, log)
    fixed = bench_real.fixed_pattern(first, values.shape[0], log)
    md += (
        f"\n\nArtefacts of `{labels[0]}` (`benchmarks/bench_real.py`'s checks, default result "
        "= network + "
        "projection): frames cropped to the bounding box of their cores so that the field of "
        f"view reaches the camera-frame border; `SR - TLI` within {bench_real.BORDER} px of it "
        "and inside, and its gradient ratio:\n\n"
        + markdown_table(
            [
                "frame",
                "inference",
                f"FOV px within {bench_real.BORDER} px of the frame border",
                "RMS SR - TLI there",
                "max abs SR - TLI there",
                "RMS SR - TLI inside",
                "gradient ratio x/y of SR - TLI",
            ],
            border,
        )
        + f"\n\nFixed pattern on the USAF video ({values.shape[0]} frames): RMS over the cores "
        "of the temporal mean of each core's neighbour residual (the part that stays while "
        "the scene moves); amplification = output's / input's (1 = not sharpened):\n\n"
        + markdown_table(
            ["values", "fixed pattern RMS", "all residuals RMS", "amplification"], fixed
        )
    )
    data = {
        "frames": frames,
        "per_frame": {str(t): v for t, v in per_frame.items()},
        "coverage_fraction": covered,
        "border": border,
        "fixed_pattern": fixed,
    }
    return md, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--name", nargs="+", default=None, help="pretrained model name(s) (default: all shipped)"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LABEL=FILE",
        help="also score this model file, labelled LABEL (repeatable)",
    )
    parser.add_argument("--classes", action="store_true", help="Table 3 on the test crops")
    parser.add_argument("--real", action="store_true", help="the real USAF video")
    parser.add_argument(
        "--frames", default="1-12", help="video frames to score, 1-based (e.g. 1-12 or 1,4,7)"
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="self-ensemble sizes to score every model at (default: super_resolve's default "
        "only); other sizes than the default get rows labelled 'LABEL xN'",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--precision",
        default=None,
        help="arithmetic of every model's network (auto, fp32, bf16; default: super_resolve's "
        "default, auto)",
    )
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument(
        "--stem",
        default=None,
        help="results file stem (default: pretrained_<name> for one model, else "
        "pretrained_compare)",
    )
    parser.add_argument(
        "--true-noise",
        action="store_true",
        help="with --classes: only the projection with the estimated against the true noise "
        "level (results *_truenoise_classes.json, docs block pretrained-truenoise-classes)",
    )
    args = parser.parse_args(argv)
    if not (args.classes or args.real):
        parser.error("give --classes, --real or both")
    frames = _parse_frames(args.frames)
    import torch

    from napari_cycsr import list_pretrained, pretrained
    from napari_cycsr.io import load_model

    names = args.name or [m["name"] for m in list_pretrained()]
    models: dict[str, Any] = {f"pretrained:{n}": pretrained(n) for n in names}
    for item in args.model:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            parser.error(f"--model needs LABEL=FILE, got {item!r}")
        models[label] = load_model(path)
    stem = f"pretrained_{names[0]}" if len(models) == 1 else "pretrained_compare"
    stem = args.stem or stem
    if args.ensemble:
        from napari_cycsr.config import DEFAULT_ENSEMBLE, ENSEMBLE_SIZES

        bad = [n for n in args.ensemble if n not in ENSEMBLE_SIZES]
        if bad:
            parser.error(f"--ensemble sizes must be among {ENSEMBLE_SIZES}, got {bad}")
        models = {
            (label if n == DEFAULT_ENSEMBLE else f"{label} x{n}"): (model, {"ensemble": n})
            for label, model in models.items()
            for n in sorted(args.ensemble, key=lambda n: n != DEFAULT_ENSEMBLE)
        }
    if args.precision is not None:
        from napari_cycsr._device import check_precision

        try:
            precision = check_precision(args.precision)
        except (TypeError, ValueError) as exc:
            parser.error(str(exc))
        models = {
            label: (entry[0], {**entry[1], "precision": precision})
            if isinstance(entry, tuple)
            else (entry, {"precision": precision})
            for label, entry in models.items()
        }
    block = "pretrained-compare"  # the docs hold the latest run's tables, whatever it scored
    if args.true_noise:
        if args.real or not args.classes:
            parser.error("--true-noise goes with --classes only")
        stem, block = f"{stem}_truenoise", "pretrained-truenoise"

    torch.set_num_threads(max(1, args.threads))
    command = "python benchmarks/bench_pretrained.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-docs"
    )
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:5.0f}s] {msg}", file=sys.stderr, flush=True)

    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    sections = {}
    for part, run in (
        ("classes", lambda: run_classes_part(models, args.seed, log, true_noise=args.true_noise)),
        (
            "real",
            lambda: run_real_part(models, frames, log, command, None if args.no_docs else FIGURE),
        ),
    ):
        if not getattr(args, part):
            continue
        if part == "real" and not (SHARED_DATA / "super_res").is_dir():
            print(f"no real video at {SHARED_DATA / 'super_res'}: --real skipped")
            continue
        started = time.perf_counter()
        md, data = run()
        seconds = time.perf_counter() - started
        head = (
            f"Generated by `{command}` on {stamp} in {seconds / 60:.1f} min ({platform.machine()}, "
            f"{os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s), load "
            f"average {load:.1f} at start).\n\n"
        )
        print(head + md + "\n")
        write_json(
            RESULTS / f"{stem}_{part}.json",
            {"command": command, "date": stamp, "seconds": seconds, **_plain(data)},
        )
        sections[f"{block}-{part}"] = head + md
    if sections and not args.no_docs:
        update_markdown(DOCS, sections)
        print(f"updated {DOCS}")
    return 0


def _parse_frames(text: str) -> list[int]:
    """``"1-12"`` or ``"1,4,7"`` (1-based) as 0-based frame indices."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        a, b = int(lo), int(hi or lo)
        if a < 1 or b < a:
            raise SystemExit(f"--frames: bad range {part!r} (1-based, e.g. 1-12 or 1,4,7)")
        out += list(range(a - 1, b))
    return sorted(set(out))


def _plain(data: Any) -> Any:
    """Nested dicts/lists with float NaN kept as None (JSON has no NaN)."""
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    if isinstance(data, (float, np.floating)):
        return float(data) if np.isfinite(data) else None
    return data


if __name__ == "__main__":
    sys.exit(main())
