"""Reproduce the experiments of Ravì et al. on simulated pCLE with a known ground truth.

One command trains every model, scores every method on a held-out test set, and writes
Markdown tables (between markers in ``docs/benchmarks.md``), figures
(``docs/images/bench_*.png``) and the raw numbers (``benchmarks/results/*.json``)::

    python benchmarks/run_experiments.py --quick       # ~5 min on 2 CPU cores
    python benchmarks/run_experiments.py               # default budget, ~60 min on 2 cores
    python benchmarks/run_experiments.py --preset paper  # the paper's network size (GPU)

Experiments (see ``benchmarks/_common.py`` for the data design):

* Table 1, target domains: the same network trained with ``T_pair``, ``T_unpair``,
  ``T_res`` and ``T_nat``; SSIM and PSNR against the true HR, dGCF against HR and LR,
  cycle error, Tot_cs; mean ± sd over the test crops.
* Table 2, methods: the best domain against TLI (the input), Wiener deconvolution (PSF
  matched to the fibre spacing; balance estimated per frame, and balance tuned on the
  training set), unsharp-mask sharpening, the TLI image projected onto the measured fibre
  values ("TLI + projection", no training; ``napari_cycsr.consistency``), the best domain's
  output projected the same way ("<domain> + projection"), and the same network trained
  supervised on the paired data (pixel loss); paired t-tests (``scipy.stats.ttest_rel``)
  over test crops.
* Ablations: each loss term / option of :class:`~napari_cycsr.training.TrainConfig` changed
  one at a time from the base configuration.
* Table 3, content classes (do no harm): the best domain's network, its noise-aware and
  exact projections, TLI + projection and Wiener on textures, smooth tissue-like images and
  sparse bright structures at four noise levels; differences to TLI with paired t-tests,
  spectrum distance above the fibre sampling frequency and hallucinated detail.
* Real frames (``../shared/data/pyfibrebundle``): detection, core values, TLI, a model
  trained on those reconstructions (natural target); reference-free figures (GCF, cycle
  error) and side-by-side crops.

Every random choice is seeded (``--seed``, default 0). Torch runs on one CPU thread by
default (``--threads``): on a small shared machine more threads oversubscribe the cores and
run many times slower.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CONTENT_CLASSES,
    NATURAL_IMAGES,
    NOISE_LEVELS,
    REAL_FRAMES,
    REPO_ROOT,
    TEST_IMAGES,
    TRAIN_IMAGES,
    UNPAIRED_IMAGES,
    class_crops,
    crop_grid,
    fmt_mean_sd,
    fmt_p,
    load_grey,
    load_real_frame,
    markdown_table,
    mean_sd,
    paired_ttest,
    update_markdown,
    write_json,
)

DOCS = REPO_ROOT / "docs" / "benchmarks.md"
IMAGES = REPO_ROOT / "docs" / "images"
RESULTS = REPO_ROOT / "benchmarks" / "results"
NOISE = 0.01  # additive Gaussian noise on the simulated fibre values (images in [0, 1])
METRICS = ("ssim", "psnr", "dgcf_ref", "dgcf_lr", "cycle_error")
DOMAINS = ("T_pair", "T_unpair", "T_res", "T_nat")
#: Table 1's reference without a target domain: the T_nat configuration with w_adv = 0.
NO_ADV = "no l_adv"


@dataclass(frozen=True)
class Budget:
    """How much work a mode does. Every field is a plain number or name."""

    name: str
    preset: str
    iterations: int
    batch_size: int
    patch: int
    test_crop: int
    test_per_image: int
    ablation_iterations: int
    real_iterations: int
    ablations: tuple[str, ...]
    class_count: int = 12  # test crops per content class (Table 3)
    train_size: int | None = None  # crop the training images to this side (None: whole)
    settings: tuple[tuple[str, Any], ...] = ()  # TrainConfig overrides for every model


#: Ablations: name -> (TrainConfig overrides, what it tests)
ABLATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "no l_adv": ({"w_adv": 0.0}, "w_adv = 0 (no discriminator term)"),
    "paper w_adv": ({"w_adv": 1.0}, "w_adv = 1 (the paper's Eq. 3 weights 1, 1, 1)"),
    "w_adv 1e-3": ({"w_adv": 1e-3}, "w_adv = 1e-3 (SRGAN's weight; our default before)"),
    "with l_reg": ({"w_reg": 1.0}, "w_reg = 1 (the paper's Eq. 6 term; our default before)"),
    "l_vec normalised": ({"normalise_vec": True}, "per-patch [0,1] min-max of V and V^"),
    "no D noise": ({"noise_sigma": 0.0}, "no white noise on the discriminator's inputs"),
    "paper padding": ({"paper_padding": True}, "l_vec divided by 682 per patch"),
    "cycle x10": (
        {"w_vec": 10.0, "w_reg": 10.0},
        "w_vec = w_reg = 10 (both physics terms; l_reg is off in the base)",
    ),
    "cycle x100": ({"w_vec": 100.0, "w_reg": 100.0}, "w_vec = w_reg = 100"),
    "consistency layer": (
        {"consistency_steps": 2},
        "generator output back-projected onto V during training (2 steps)",
    ),
    "tiny preset": ({"preset": "tiny"}, "smallest network"),
    "default preset": ({"preset": "default"}, "the CPU default network"),
}

MODES: dict[str, Budget] = {
    "quick": Budget(
        name="quick",
        preset="tiny",
        iterations=150,
        batch_size=8,
        patch=48,
        test_crop=96,
        test_per_image=3,
        ablation_iterations=150,
        real_iterations=100,
        class_count=6,
        ablations=(
            "no l_adv",
            "paper w_adv",
            "w_adv 1e-3",
            "with l_reg",
            "l_vec normalised",
            "no D noise",
            "paper padding",
            "cycle x10",
            "cycle x100",
            "consistency layer",
        ),
    ),
    "default": Budget(
        name="default",
        preset="default",
        iterations=300,
        batch_size=16,
        patch=64,
        test_crop=128,
        test_per_image=6,
        ablation_iterations=150,
        real_iterations=200,
        ablations=tuple(k for k in ABLATIONS if k != "default preset"),
    ),
    "paper": Budget(
        name="paper",
        preset="paper",
        iterations=50_000,
        batch_size=54,
        patch=64,
        test_crop=128,
        test_per_image=10,
        ablation_iterations=10_000,
        real_iterations=20_000,
        ablations=tuple(k for k in ABLATIONS if not k.endswith("preset")),
    ),
}


# ---------------------------------------------------------------------- data


@dataclass
class DataSet:
    """Everything the experiments train and test on (see ``_common`` for the design)."""

    train: list[Any]  # PCLESimulation of the training images
    test: list[Any]  # PCLESimulation of the test crops
    test_names: list[str]
    unpaired: list[np.ndarray]
    natural: list[np.ndarray]


def build_data(budget: Budget, seed: int) -> DataSet:
    """Simulate the training images and the test crops (seeded, disjoint images)."""
    from napari_cycsr.simulate import simulate_pcle

    train = []
    for i, name in enumerate(TRAIN_IMAGES):
        img = load_grey(name)
        if budget.train_size is not None:
            img = crop_grid(img, min(budget.train_size, *img.shape), 1)[0]
        train.append(simulate_pcle(img, noise=NOISE, seed=seed * 1000 + i))
    test, names = [], []
    for i, name in enumerate(TEST_IMAGES):
        crops = crop_grid(load_grey(name), budget.test_crop, budget.test_per_image)
        for j, crop in enumerate(crops):
            test.append(simulate_pcle(crop, noise=NOISE, seed=seed * 1000 + 500 + 50 * i + j))
            names.append(f"{name}#{j}")
    unpaired = [load_grey(n) for n in UNPAIRED_IMAGES]
    natural = [load_grey(n) for n in NATURAL_IMAGES]
    return DataSet(train, test, names, unpaired, natural)


# ---------------------------------------------------------------------- training


def train_config(budget: Budget, seed: int, iterations: int | None = None, **overrides: Any) -> Any:
    """The base :class:`TrainConfig` of a mode, with overrides."""
    from napari_cycsr.training import TrainConfig

    base = {
        "preset": budget.preset,
        "iterations": iterations or budget.iterations,
        "batch_size": budget.batch_size,
        "patch": budget.patch,
        "seed": seed,
        "device": device_of(budget),
        "preview_every": 0,
        "checkpoint_every": 0,
        **dict(budget.settings),
    }
    if budget.name == "paper":
        return TrainConfig.paper(**{**base, **overrides})
    return TrainConfig(**{**base, **overrides})


def train_model(
    lr_images: list[np.ndarray],
    bundles: list[Any],
    values: list[np.ndarray] | None,
    config: Any,
    *,
    target: str,
    target_images: list[np.ndarray] | None = None,
    log: Callable[[str], None] = print,
    label: str = "",
) -> tuple[Any, dict[str, Any]]:
    """Train one model; returns it and facts about the run (time, final losses)."""
    from napari_cycsr.training import Trainer

    t0 = time.perf_counter()
    trainer = Trainer(
        lr_images,
        bundles,
        target=target,
        config=config,
        values=values,
        target_images=target_images,
    )
    last = None
    for event in trainer.run():
        last = event
    seconds = time.perf_counter() - t0
    losses = dict(last.losses) if last is not None else {}
    log(f"  trained {label or target}: {config.iterations} it in {seconds:.0f} s; {losses}")
    model = trainer.model
    history = model.metadata.get("loss_history") if isinstance(model.metadata, dict) else None
    return model, {
        "seconds": seconds,
        "losses": losses,
        "loss_history": history,
        "config": config.to_dict(),
    }


def device_of(budget: Budget) -> str:
    """Torch device of a mode: "auto" (GPU when there is one) for "paper", else "cpu"."""
    return "auto" if budget.name == "paper" else "cpu"


def super_resolve_all(model: Any, sims: Sequence[Any], device: str = "cpu") -> list[np.ndarray]:
    """SR of every simulated LR image (outside the FOV set to 0)."""
    from napari_cycsr.inference import super_resolve

    return [super_resolve(model, s.lr, device=device, mask=s.mask) for s in sims]


# ---------------------------------------------------------------------- scoring


def score(outputs: dict[str, list[np.ndarray]], data: DataSet) -> dict[str, dict[str, list]]:
    """Per-method, per-metric lists over the test crops (``metrics.evaluate`` per crop).

    SSIM and PSNR use the fixed data range [0, 1] of the HR images; every metric is
    restricted to the bundle's field of view. ``spec``: spectrum distance above the fibre
    sampling frequency (dB); ``hall``: detail added where the truth is flat.
    """
    from napari_cycsr.metrics import evaluate, hallucination, spectrum_distance

    per: dict[str, dict[str, list]] = {m: {k: [] for k in METRICS} for m in outputs}
    for i, sim in enumerate(data.test):
        rows = evaluate(
            {m: outs[i] for m, outs in outputs.items()},
            reference=sim.hr,
            lr=sim.lr,
            mask=sim.mask,
            bundle=sim.bundle,
            values=sim.values,
            data_range=(0.0, 1.0),
            tot_cs_method="fixed",
        )
        for row in rows:
            for k in METRICS:
                per[row["method"]][k].append(float(row[k]))
            per[row["method"]].setdefault("tot_cs_fixed", []).append(float(row["tot_cs"]))
        sp = sim.bundle.spacing
        for m, outs in outputs.items():
            per[m].setdefault("spec", []).append(
                spectrum_distance(outs[i], sim.hr, spacing=sp, mask=sim.mask)
            )
            per[m].setdefault("hall", []).append(
                hallucination(outs[i], sim.hr, spacing=sp, mask=sim.mask)
            )
    return per


def table(per: dict[str, dict[str, list]], methods: Sequence[str]) -> str:
    """Markdown table: metrics as rows, methods as columns (as in the paper)."""
    from napari_cycsr.metrics import tot_cs

    means_s = [mean_sd(per[m]["ssim"])[0] for m in methods]
    means_d = [mean_sd(per[m]["dgcf_ref"])[0] for m in methods]
    rel = tot_cs(means_s, means_d, method="minmax")
    rows = [
        ["SSIM vs HR"] + [fmt_mean_sd(per[m]["ssim"], 3) for m in methods],
        ["PSNR vs HR (dB)"] + [fmt_mean_sd(per[m]["psnr"], 2) for m in methods],
        ["dGCF vs HR"] + [fmt_mean_sd(per[m]["dgcf_ref"], 3) for m in methods],
        ["dGCF vs LR"] + [fmt_mean_sd(per[m]["dgcf_lr"], 3) for m in methods],
        ["cycle error (x1e-4)"]
        + [fmt_mean_sd(np.asarray(per[m]["cycle_error"]) * 1e4, 2) for m in methods],
        ["spectrum distance (dB)"] + [fmt_mean_sd(per[m]["spec"], 2) for m in methods],
        ["hallucination (x1e-3)"]
        + [fmt_mean_sd(np.asarray(per[m]["hall"]) * 1e3, 2) for m in methods],
        ["Tot_cs (min-max over columns)"] + [f"{v:.2f}" for v in rel],
        ["Tot_cs (fixed)"] + [fmt_mean_sd(per[m]["tot_cs_fixed"], 3) for m in methods],
    ]
    return markdown_table(["metric", *methods], rows)


def adv_table(per: dict[str, dict[str, list]], domains: Sequence[str]) -> str:
    """Each domain + projection against ``no l_adv`` + projection: the adversarial term's effect."""
    ref = f"{NO_ADV} + projection"
    rows = []
    for dom in domains:
        name = f"{dom} + projection"
        row = [name]
        verdict = True
        for key in ("spec", "adgcf", "psnr"):
            if key == "adgcf":
                a = np.abs(per[name]["dgcf_ref"])
                b = np.abs(per[ref]["dgcf_ref"])
            else:
                a, b = np.asarray(per[name][key]), np.asarray(per[ref][key])
            t, pval = paired_ttest(a, b)
            d = float(np.mean(a - b))
            row.append(f"{d:+.3f} (p={fmt_p(pval)})" if np.isfinite(t) else f"{d:+.3f}")
            if key == "psnr":
                verdict &= d >= -0.3
            else:
                verdict &= d < 0 and np.isfinite(pval) and pval < 0.01
        row.append("**yes**" if verdict else "no")
        rows.append(row)
    header = [f"minus {ref}", "Δ spectrum distance (dB)", "Δ abs dGCF vs HR", "ΔPSNR (dB)"]
    return markdown_table([*header, "aim met"], rows)


def ttests(per: dict[str, dict[str, list]], proposed: str, others: Sequence[str]) -> str:
    """Paired t-tests of the proposed method against each other method."""
    rows = []
    for other in others:
        row = [other]
        for k in ("ssim", "psnr", "dgcf_ref"):
            a, b = per[proposed][k], per[other][k]
            t, p = paired_ttest(a, b)
            diff = mean_sd(np.asarray(a) - np.asarray(b))[0]
            row.append(f"{diff:+.3f} (t={t:.2f}, p={fmt_p(p)})" if np.isfinite(t) else "n/a")
        rows.append(row)
    return markdown_table([f"{proposed} minus", "ΔSSIM", "ΔPSNR (dB)", "ΔdGCF vs HR"], rows)


# ---------------------------------------------------------------------- baselines


def tune_wiener(train: Sequence[Any], log: Callable[[str], None]) -> float:
    """Wiener balance maximising the mean PSNR on central crops of the training images."""
    from napari_cycsr.baselines import wiener
    from napari_cycsr.metrics import psnr

    crops = []
    for sim in train:
        h, w = sim.hr.shape
        s = min(h, w, 192)
        y0, x0 = (h - s) // 2, (w - s) // 2
        sl = (slice(y0, y0 + s), slice(x0, x0 + s))
        crops.append((sim.lr[sl], sim.hr[sl], sim.mask[sl], sim.bundle.spacing))
    best, best_score = None, -np.inf
    for balance in np.logspace(-4, 0, 9):
        vals = [
            psnr(wiener(lr, sp, balance=float(balance), mask=m), hr, mask=m, data_range=(0, 1))
            for lr, hr, m, sp in crops
        ]
        if np.mean(vals) > best_score:
            best, best_score = float(balance), float(np.mean(vals))
    log(f"  Wiener balance tuned on the training images: {best:.2g} (PSNR {best_score:.2f})")
    return float(best)


def baselines(data: DataSet, balance: float) -> dict[str, list[np.ndarray]]:
    """TLI, Wiener (auto and tuned balance), sharpening and TLI + projection of every crop.

    "TLI + projection" is the noise-aware projection (noise estimated from the values, the
    default); "TLI + exact projection" fits the values exactly (2 steps, the former default).
    """
    from napari_cycsr.baselines import backproject, sharpen, wiener

    out: dict[str, list[np.ndarray]] = {
        "TLI (input)": [],
        "Wiener": [],
        "Wiener (tuned)": [],
        "sharpen": [],
        "TLI + projection": [],
        "TLI + exact projection": [],
    }
    for sim in data.test:
        sp, m = sim.bundle.spacing, sim.mask
        out["TLI (input)"].append(sim.lr)
        out["Wiener"].append(wiener(sim.lr, sp, mask=m))
        out["Wiener (tuned)"].append(wiener(sim.lr, sp, balance=balance, mask=m))
        out["sharpen"].append(sharpen(sim.lr, mask=m, spacing=sp))
        out["TLI + projection"].append(backproject(sim.lr, sim.bundle, sim.values))
        out["TLI + exact projection"].append(
            backproject(sim.lr, sim.bundle, sim.values, noise=None)
        )
    return out


def projected(outputs: dict[str, list[np.ndarray]], data: DataSet) -> dict[str, list]:
    """Each method's test outputs projected onto the measured fibre values ("+ projection")."""
    from napari_cycsr.consistency import project_consistent

    return {
        f"{name} + projection": [
            project_consistent(img, sim.bundle, sim.values) for img, sim in zip(outs, data.test)
        ]
        for name, outs in outputs.items()
    }


# ---------------------------------------------------------------------- experiments


def run_domains(
    data: DataSet,
    budget: Budget,
    seed: int,
    log: Callable[[str], None],
    domains: Sequence[str] = DOMAINS,
) -> tuple[dict[str, list[np.ndarray]], dict[str, Any], dict[str, Any]]:
    """Table 1: one model per target domain, and the same without l_adv (``NO_ADV``).

    Returns (outputs, facts, models).
    """
    lr = [s.lr for s in data.train]
    bundles = [s.bundle for s in data.train]
    values = [s.values for s in data.train]
    specs = {
        "T_pair": ("paired", [s.hr for s in data.train]),
        "T_unpair": ("images", data.unpaired),
        "T_res": ("downscaled", None),
        "T_nat": ("images", data.natural),
    }
    outputs, facts, models = {}, {}, {}
    for name in [*domains, NO_ADV]:
        if name == NO_ADV:  # the reference: no target domain at all
            target, images = specs["T_nat"]
            cfg = train_config(budget, seed, target=target, w_adv=0.0)
        else:
            target, images = specs[name]
            cfg = train_config(budget, seed, target=target)
        model, info = train_model(
            lr, bundles, values, cfg, target=target, target_images=images, log=log, label=name
        )
        outputs[name] = super_resolve_all(model, data.test, device_of(budget))
        facts[name] = info
        models[name] = model
    return outputs, facts, models


def run_supervised(
    data: DataSet, budget: Budget, seed: int, log: Callable[[str], None]
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The same network trained with a pixel loss on the paired (LR, HR) training data."""
    cfg = train_config(
        budget,
        seed,
        target="paired",
        w_pix=1.0,
        w_vec=0.0,
        w_adv=0.0,
        w_reg=0.0,
        warmup=budget.iterations,  # no discriminator at all
    )
    model, info = train_model(
        [s.lr for s in data.train],
        [s.bundle for s in data.train],
        [s.values for s in data.train],
        cfg,
        target="paired",
        target_images=[s.hr for s in data.train],
        log=log,
        label="supervised",
    )
    return super_resolve_all(model, data.test, device_of(budget)), info


def run_ablations(
    data: DataSet,
    budget: Budget,
    seed: int,
    log: Callable[[str], None],
    reuse_base: tuple[list[np.ndarray], dict[str, Any]] | None = None,
) -> tuple[dict[str, list[np.ndarray]], dict[str, Any], dict[str, str]]:
    """Each ablation changes one thing from the base config (natural target).

    ``reuse_base``: (outputs, facts) of a model trained with exactly the base config (the
    ``T_nat`` model when the iteration counts agree), used instead of training it again.
    """
    from napari_cycsr.training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    lr = [s.lr for s in data.train]
    bundles = [s.bundle for s in data.train]
    values = [s.values for s in data.train]
    outputs, facts, skipped = {}, {}, {}
    runs = {"base": {}} | {k: ABLATIONS[k][0] for k in budget.ablations}
    for name, overrides in runs.items():
        missing = set(overrides) - fields
        if missing:
            skipped[name] = f"TrainConfig has no {sorted(missing)}"
            continue
        if overrides.get("preset") == budget.preset:
            continue
        if name == "base" and reuse_base is not None:
            outputs[name], facts[name] = reuse_base
            log("  ablation base = the T_nat model (same configuration)")
            continue
        cfg = train_config(budget, seed, budget.ablation_iterations, target="images", **overrides)
        model, info = train_model(
            lr,
            bundles,
            values,
            cfg,
            target="images",
            target_images=data.natural,
            log=log,
            label=f"ablation {name}",
        )
        outputs[name] = super_resolve_all(model, data.test, device_of(budget))
        facts[name] = info
    return outputs, facts, skipped


def run_real(
    budget: Budget, seed: int, log: Callable[[str], None]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Real frames: detect, core values, TLI, train on them (natural target), super-resolve."""
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.metrics import cycle_error, gcf

    frames = {}
    for name in REAL_FRAMES:
        raw, bg = load_real_frame(name)
        t0 = time.perf_counter()
        bundle = FibreBundle.detect(bg)
        values = bundle.core_values(raw, background=bg)
        lr = bundle.reconstruct(values)
        # crop to the bounding box of the field of view (the SR runs on fewer pixels)
        c = bundle.centres
        h, w = bundle.shape
        y0 = max(0, int(np.floor(c[:, 0].min())))
        x0 = max(0, int(np.floor(c[:, 1].min())))
        y1 = min(h, int(np.ceil(c[:, 0].max())) + 1)
        x1 = min(w, int(np.ceil(c[:, 1].max())) + 1)
        local = FibreBundle(bundle.centres - [y0, x0], (y1 - y0, x1 - x0))
        frames[name] = {
            "bundle": local,
            "values": values,
            "lr": lr[y0:y1, x0:x1].copy(),
            "detect_s": time.perf_counter() - t0,
        }
        log(f"  {name}: {bundle.n_fibres} cores, spacing {bundle.spacing:.2f} px")
    names = list(frames)
    cfg = train_config(budget, seed, budget.real_iterations, target="images")
    model, info = train_model(
        [frames[n]["lr"] for n in names],
        [frames[n]["bundle"] for n in names],
        [frames[n]["values"] for n in names],
        cfg,
        target="images",
        target_images=[load_grey(n) for n in NATURAL_IMAGES],
        log=log,
        label="real frames (T_nat)",
    )
    results = {}
    for n in names:
        f = frames[n]
        m = f["bundle"].fov_mask
        t0 = time.perf_counter()
        sr = super_resolve(model, f["lr"], device=device_of(budget), mask=m)
        t_sr = time.perf_counter() - t0
        hi = float(np.percentile(f["lr"][m], 99.5))
        rng = (0.0, hi)
        results[n] = {
            "n_fibres": f["bundle"].n_fibres,
            "spacing": f["bundle"].spacing,
            "shape": list(f["lr"].shape),
            "gcf_lr": gcf(f["lr"], mask=m, data_range=rng),
            "gcf_sr": gcf(sr, mask=m, data_range=rng),
            "cycle_lr": cycle_error(f["lr"], f["bundle"], f["values"]),
            "cycle_sr": cycle_error(sr, f["bundle"], f["values"]),
            "sr_seconds": t_sr,
            "_lr": f["lr"],
            "_sr": sr,
            "_mask": m,
        }
    return results, info


# ---------------------------------------------------------------------- content classes

#: Methods of Table 3 (content classes) that need no network (see run_classes).
CLASS_BASELINES = (
    "TLI (input)",
    "Wiener",
    "TLI + exact projection",
    "TLI + projection",
    "TLI + projection (true noise)",
)


def class_methods(networks: Sequence[str]) -> list[str]:
    """Rows of Table 3: the baselines, then each network raw, exactly and noise-aware projected."""
    rows = list(CLASS_BASELINES)
    for net in networks:
        rows += [net, f"{net} + exact projection", f"{net} + projection"]
    return rows


def default_results(networks: Sequence[str]) -> list[str]:
    """Rows of the do-no-harm verdict: the default single-frame results."""
    return ["TLI + projection", *[f"{net} + projection" for net in networks]]


def class_sims(budget: Budget, seed: int) -> dict[tuple[str, float], list[Any]]:
    """Simulated test crops of every content class at every noise level (seeded)."""
    from napari_cycsr.simulate import simulate_pcle

    out: dict[tuple[str, float], list[Any]] = {}
    for c, cls in enumerate(CONTENT_CLASSES):
        crops = class_crops(cls, "test", 128, budget.class_count)
        for k, noise in enumerate(NOISE_LEVELS):
            out[(cls, noise)] = [
                simulate_pcle(hr, noise=noise, seed=seed * 1_000_000 + 10_000 * c + 100 * k + i)
                for i, (_, hr) in enumerate(crops)
            ]
    return out


def run_classes(
    sims: dict[tuple[str, float], list[Any]],
    models: dict[str, Any],
    device: str,
    log: Callable[[str], None],
    *,
    true_noise: bool = False,
) -> dict[str, Any]:
    """Table 3: every method on every content class and noise level; per-crop metrics.

    ``models`` maps a row name to a model (the proposed one, trained on the training images
    at noise sd 0.01, and optionally pretrained models; never trained on these crops), or to
    ``(model, options)`` with more ``super_resolve`` options (e.g. ``{"ensemble": 1}``), run
    through ``super_resolve`` (which resamples to a model's fibre spacing when it differs);
    "+ projection" is the noise-aware projection with the noise estimated from each crop's
    fibre values (the default of ``super_resolve`` with fibres), "+ exact projection" the
    exact fit (2 steps, the former default), "(true noise)" the noise-aware projection given
    the simulation's noise level (for the networks too with ``true_noise``: rows
    "<net> + projection (true noise)", what a known noise level would give them).
    """
    from napari_cycsr.baselines import wiener
    from napari_cycsr.consistency import estimate_noise, project_consistent
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.metrics import hallucination, psnr, spectrum_distance, ssim

    per: dict[str, Any] = {}
    for (cls, noise), group in sims.items():
        key = f"{cls}@{noise:g}"
        names = class_methods(list(models))
        if true_noise:
            names += [f"{n} + projection (true noise)" for n in models]
        rows: dict[str, dict[str, list[float]]] = {m: {} for m in names}
        sigma_ratio = []
        for sim in group:
            b, v, m, hr = sim.bundle, sim.values, sim.mask, sim.hr
            outs = {
                "TLI (input)": sim.lr,
                "Wiener": wiener(sim.lr, b.spacing, mask=m),
                "TLI + exact projection": project_consistent(sim.lr, b, v, noise=None),
                "TLI + projection": project_consistent(sim.lr, b, v),
                "TLI + projection (true noise)": project_consistent(sim.lr, b, v, noise=noise),
            }
            for name, entry in models.items():
                model, options = entry if isinstance(entry, tuple) else (entry, {})
                net = super_resolve(
                    model, sim.lr, device=device, mask=m, spacing=b.spacing, **options
                )
                outs[name] = net
                outs[f"{name} + exact projection"] = project_consistent(net, b, v, noise=None)
                outs[f"{name} + projection"] = project_consistent(net, b, v)
                if true_noise:
                    outs[f"{name} + projection (true noise)"] = project_consistent(
                        net, b, v, noise=noise
                    )
            sigma_ratio.append(estimate_noise(v, b) / noise)
            for name, img in outs.items():
                r = rows[name]
                for metric, value in (
                    ("psnr", psnr(img, hr, mask=m, data_range=(0, 1))),
                    ("ssim", ssim(img, hr, mask=m, data_range=(0, 1))),
                    ("spec", spectrum_distance(img, hr, spacing=b.spacing, mask=m)),
                    (
                        "spec_signed",
                        spectrum_distance(img, hr, spacing=b.spacing, mask=m, signed=True),
                    ),
                    ("hall", hallucination(img, hr, spacing=b.spacing, mask=m)),
                ):
                    r.setdefault(metric, []).append(float(value))
        per[key] = {"methods": rows, "noise_estimate_ratio": sigma_ratio}
        tli = np.mean(rows["TLI (input)"]["psnr"])
        gains = ", ".join(
            f"{n} + projection {np.mean(rows[f'{n} + projection']['psnr']) - tli:+.2f} dB"
            for n in models
        )
        log(f"  classes {key}: against TLI: {gains}")
    return per


def class_report(
    per: dict[str, Any], best: str, networks: Sequence[str], *, intro: str | None = None
) -> str:
    """Markdown of Table 3: per class and noise level, differences to TLI; the verdict.

    ``intro`` replaces the opening paragraph (which describes the ``network`` row).
    """
    n_crops = len(per[next(iter(per))]["methods"]["TLI (input)"]["psnr"])
    methods = class_methods(networks)
    lines = [
        intro
        if intro is not None
        else f"**Table 3: content classes (do no harm).** {n_crops} "
        "test crops (128 px) per class, each simulated at every noise level; `network` is "
        f"the proposed model ({best}, trained on the training images at noise sd {NOISE}, "
        "never on these crops); `pretrained:NAME` rows are the models that ship with the "
        'package, with no fine-tuning. "+ projection": noise-aware projection with the noise '
        "estimated from each crop's fibre values (the default of `super_resolve` with "
        'fibres); "+ exact projection": the exact fit (2 steps, the former default); '
        '"(true noise)": the noise-aware projection given the true noise level. Cells: '
        "ΔPSNR (dB) / ΔSSIM against TLI, mean over the crops (TLI row: absolute values).",
        "",
    ]
    classes = list(CONTENT_CLASSES)
    for cls in classes:
        header = ["method", *[f"noise {n:g}" for n in NOISE_LEVELS]]
        rows = []
        for method in methods:
            row = [method]
            for noise in NOISE_LEVELS:
                r = per[f"{cls}@{noise:g}"]["methods"]
                tli = r["TLI (input)"]
                if method == "TLI (input)":
                    row.append(f"{np.mean(tli['psnr']):.2f} / {np.mean(tli['ssim']):.3f}")
                    continue
                dp = np.mean(np.asarray(r[method]["psnr"]) - tli["psnr"])
                ds = np.mean(np.asarray(r[method]["ssim"]) - tli["ssim"])
                row.append(f"{dp:+.2f} / {ds:+.3f}")
            rows.append(row)
        lines += [f"*{cls}*", "", markdown_table(header, rows), ""]
    # the verdict: default results against TLI with paired t-tests and the worst crop
    rows = []
    for method in default_results(networks):
        for cls in classes:
            for noise in NOISE_LEVELS:
                r = per[f"{cls}@{noise:g}"]["methods"]
                tli = r["TLI (input)"]
                cells = [method, cls, f"{noise:g}"]
                worse = False
                for metric, digits in (("psnr", 2), ("ssim", 3)):
                    a, b = np.asarray(r[method][metric]), np.asarray(tli[metric])
                    t, pval = paired_ttest(a, b)
                    d = float(np.mean(a - b))
                    worse |= d < 0 and np.isfinite(pval) and pval < 0.05
                    cells.append(
                        f"{d:+.{digits}f} (p={fmt_p(pval)})"
                        if np.isfinite(t)
                        else f"{d:+.{digits}f}"
                    )
                cells.append(f"{np.min(np.asarray(r[method]['psnr']) - tli['psnr']):+.2f}")
                cells.append("**worse**" if worse else "no")
                rows.append(cells)
    lines += [
        "Do-no-harm verdict for the default results (paired t-tests over the crops, result "
        "minus TLI; worse = lower mean with p < 0.05):",
        "",
        markdown_table(
            [
                "result",
                "class",
                "noise",
                "ΔPSNR (dB)",
                "ΔSSIM",
                "worst crop ΔPSNR",
                "worse than TLI",
            ],
            rows,
        ),
        "",
    ]
    # spectra and hallucination at the training noise level
    header = ["method"] + [f"{c}: spectrum dist. (dB) / signed / hallucination" for c in classes]
    rows = []
    for method in methods:
        row = [method]
        for cls in classes:
            r = per[f"{cls}@{NOISE:g}"]["methods"][method]
            row.append(
                f"{np.mean(r['spec']):.2f} / {np.mean(r['spec_signed']):+.2f} / "
                f"{np.mean(r['hall']) * 1e3:.1f}e-3"
            )
        rows.append(row)
    lines += [
        f"Spectrum distance above the fibre sampling frequency and hallucination (noise sd "
        f"{NOISE:g}; `metrics.spectrum_distance`, `metrics.hallucination`; signed > 0 = more "
        "fine detail than the truth):",
        "",
        markdown_table(header, rows),
        "",
        "Estimated / true noise level of the fibre values (median over the crops, "
        "`consistency.estimate_noise`): "
        + "; ".join(
            f"{cls} "
            + ", ".join(
                f"{np.median(per[f'{cls}@{n:g}']['noise_estimate_ratio']):.2f}"
                for n in NOISE_LEVELS
            )
            for cls in classes
        )
        + f" (at noise {', '.join(f'{n:g}' for n in NOISE_LEVELS)}).",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- figures


def _crop_centre(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape
    s = min(size, h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return img[y0 : y0 + s, x0 : x0 + s]


def figure_grid(
    columns: dict[str, list[np.ndarray]], rows: Sequence[int], path: Path, title: str
) -> None:
    """Rows = test crops, columns = methods; grey, shared [0, 1] range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_r, n_c = len(rows), len(columns)
    fig, axes = plt.subplots(n_r, n_c, figsize=(1.6 * n_c, 1.7 * n_r + 0.4), squeeze=False)
    for r, idx in enumerate(rows):
        for c, (name, imgs) in enumerate(columns.items()):
            ax = axes[r][c]
            ax.imshow(_crop_centre(imgs[idx], 64), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(title, 100)), fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_real(name: str, res: dict[str, Any], path: Path, command: str) -> None:
    """Side-by-side crop of a real frame: TLI input and SR output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lr, sr = res["_lr"], res["_sr"]
    hi = float(np.percentile(lr[res["_mask"]], 99.5))
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.8))
    for ax, img, t in zip(axes, (lr, sr), ("input (TLI)", "super-resolved")):
        ax.imshow(_crop_centre(img, 200), cmap="gray", vmin=0, vmax=hi)
        ax.set_title(f"{name}: {t}", fontsize=8)
        ax.axis("off")
    title = f"Centre 200x200 px crop. Made by `{command}`"
    fig.suptitle("\n".join(textwrap.wrap(title, 100)), fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------- report


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not str(k).startswith("_")}
    return obj


def parse_settings(items: Sequence[str], error: Callable[[str], Any]) -> tuple:
    """``["w_vec=10", "normalise_vec=true"]`` -> ``(("w_vec", 10), ("normalise_vec", True))``.

    Keys must be :class:`TrainConfig` fields; values are read as JSON, else kept as text.
    """
    import json

    from napari_cycsr.training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            error(f"--set expects KEY=VALUE with KEY a TrainConfig field, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.append((key, value))
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="the ~5 min budget")
    group.add_argument("--preset", choices=["paper"], help="the paper's network (GPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder of the JSON results (default %(default)s)"
    )
    parser.add_argument("--skip-real", action="store_true", help="skip the real frames")
    parser.add_argument("--skip-ablations", action="store_true")
    parser.add_argument("--skip-supervised", action="store_true")
    parser.add_argument(
        "--skip-classes", action="store_true", help="skip Table 3 (content classes)"
    )
    parser.add_argument(
        "--pretrained", nargs="*", default=[], metavar="NAME",
        help="also score these pretrained models (no fine-tuning) in Table 3",
    )  # fmt: skip
    parser.add_argument(
        "--domains", nargs="+", choices=DOMAINS, default=None, help="train only these domains"
    )
    parser.add_argument("--iterations", type=int, default=None, help="override the budget's")
    parser.add_argument(
        "--tag",
        default=None,
        help="name of a customised run (section, figure and JSON names); default 'custom'",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="TrainConfig field for every model, e.g. --set w_vec=10 (JSON value)",
    )
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else (args.preset or "default")
    budget = MODES[mode]
    if args.iterations is not None:
        if args.iterations < 1:
            parser.error("--iterations must be a positive integer")
        budget = dataclasses.replace(budget, iterations=args.iterations)
    if args.set:
        budget = dataclasses.replace(budget, settings=parse_settings(args.set, parser.error))
    domains = tuple(args.domains) if args.domains else DOMAINS
    custom = bool(
        args.domains
        or args.iterations
        or args.skip_supervised
        or args.skip_real
        or args.skip_ablations
        or args.skip_classes
        or args.set
    )
    if args.tag is not None and not args.tag.replace("_", "").isalnum():
        parser.error(f"--tag must be letters, digits and '_', got {args.tag!r}")
    tag = mode + (f"_{args.tag or 'custom'}" if custom or args.tag else "")
    section = f"experiments-{tag}".replace("_", "-")
    command = "python benchmarks/run_experiments.py" + (
        " --quick" if args.quick else (f" --preset {args.preset}" if args.preset else "")
    )
    extra = argv if argv is not None else sys.argv[1:]
    extra = [a for a in extra if a not in ("--quick", "--no-docs")]
    if "--out" in extra:  # where the JSON goes does not change the results
        i = extra.index("--out")
        extra = extra[:i] + extra[i + 2 :]
    if args.preset:
        extra = [a for a in extra if a not in ("--preset", args.preset)]
    if extra:
        command += " " + " ".join(extra)

    import torch

    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", flush=True)

    log(f"mode {mode}: {budget}")
    data = build_data(budget, args.seed)
    log(f"data: {len(data.train)} training images, {len(data.test)} test crops")
    balance = tune_wiener(data.train, log)
    outputs = baselines(data, balance)
    log("baselines done")

    dom_out, dom_facts, dom_models = run_domains(data, budget, args.seed, log, domains)
    outputs |= dom_out
    outputs |= projected(dom_out, data)
    sup_facts: dict[str, Any] = {}
    if not args.skip_supervised:
        outputs["supervised (paired)"], sup_facts = run_supervised(data, budget, args.seed, log)
    abl_out, abl_facts, abl_skipped = ({}, {}, {})
    if not args.skip_ablations:
        same = budget.ablation_iterations == budget.iterations and "T_nat" in dom_out
        reuse = (dom_out["T_nat"], dom_facts["T_nat"]) if same else None
        abl_out, abl_facts, abl_skipped = run_ablations(data, budget, args.seed, log, reuse)
    per = score(outputs | {f"abl:{k}": v for k, v in abl_out.items()}, data)
    log("scoring done")

    real, real_facts = ({}, {})
    if not args.skip_real:
        real, real_facts = run_real(budget, args.seed, log)

    # choose the proposed method: the domain with the best fixed Tot_cs
    best = max(domains, key=lambda d: mean_sd(per[d]["tot_cs_fixed"])[0])
    classes: dict[str, Any] = {}
    networks = ["network", *[f"pretrained:{n}" for n in args.pretrained]]
    if not args.skip_classes:
        from napari_cycsr import pretrained

        models = {"network": dom_models[best]}
        models |= {f"pretrained:{n}": pretrained(n) for n in args.pretrained}
        classes = run_classes(class_sims(budget, args.seed), models, "cpu", log)
        log("content classes done")
    others = [f"{best} + projection", "TLI (input)", "Wiener", "Wiener (tuned)", "sharpen"]
    others = [
        m
        for m in [*others, "TLI + projection", "TLI + exact projection", "supervised (paired)"]
        if m in outputs
    ]
    elapsed = time.perf_counter() - t_start
    meta = {
        "command": command,
        "mode": mode,
        "budget": dataclasses.asdict(budget),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, {args.threads} thread(s)",
        "seconds": elapsed,
        "seed": args.seed,
        "wiener_balance": balance,
        "best_domain": best,
        "domains": list(domains),
        "tag": tag,
        "test_crops": data.test_names,
    }
    results_file = args.out / f"experiments_{tag}.json"
    write_json(
        results_file,
        {
            "meta": meta,
            "per_image": per,
            "training": {"domains": dom_facts, "supervised": sup_facts, "ablations": abl_facts},
            "ablations_skipped": abl_skipped,
            "real": _strip(real),
            "real_training": real_facts,
            "classes": classes,
        },
    )
    log(f"wrote {results_file}")
    md = report(per, meta, budget, best, others, abl_out, abl_skipped, real, real_facts, data)
    if classes:
        md += "\n\n" + class_report(classes, best, networks)
    print(md)
    if not args.no_docs:
        step = max(1, budget.test_per_image)  # one row per test image, then fill up
        rows = sorted(set(range(0, len(data.test), step)) | {1})[:3]
        cols = {"TLI (input)": outputs["TLI (input)"]} | {d: outputs[d] for d in domains}
        cols["HR (truth)"] = [s.hr for s in data.test]
        figure_grid(
            cols,
            rows,
            IMAGES / f"bench_domains_{tag}.png",
            f"Target domains, 64x64 centre crops of test images. Made by `{command}`",
        )
        cols = {m: outputs[m] for m in [best, *others]} | {"HR (truth)": [s.hr for s in data.test]}
        figure_grid(
            cols,
            rows,
            IMAGES / f"bench_methods_{tag}.png",
            f"Methods, 64x64 centre crops of test images. Made by `{command}`",
        )
        for name, res in real.items():
            figure_real(name, res, IMAGES / f"bench_real_{name}_{tag}.png", command)
        update_markdown(DOCS, {section: md})
        log(f"updated {DOCS}")
    return 0


def report(
    per: dict[str, dict[str, list]],
    meta: dict[str, Any],
    budget: Budget,
    best: str,
    others: Sequence[str],
    abl_out: dict[str, Any],
    abl_skipped: dict[str, str],
    real: dict[str, dict[str, Any]],
    real_facts: dict[str, Any],
    data: DataSet,
) -> str:
    """The Markdown of one mode's section of docs/benchmarks.md."""
    command, tag = meta["command"], meta["tag"]
    lines = [
        f"Generated by `{command}` on {meta['date']} in {meta['seconds'] / 60:.1f} min "
        f"({meta['machine']}; the machine was shared with other jobs, so times are "
        f"indicative). Seed {meta['seed']}. Network preset `{budget.preset}`, "
        f"{budget.iterations} iterations, batch {budget.batch_size}, {budget.patch} px "
        f"patches; {len(data.test)} test crops of {budget.test_crop} px "
        f"({', '.join(TEST_IMAGES)}), simulated with noise sd {NOISE}."
        + (
            f" TrainConfig overrides for every model: `{dict(budget.settings)}`."
            if budget.settings
            else ""
        ),
        "",
        f"**Table 1: target domains** ({len(meta['domains'])} model(s), same network and "
        "budget; mean ± sd over the test crops; TLI shown for reference).",
        "",
        table(per, ["TLI (input)", *meta["domains"], NO_ADV]),
        "",
        "**Does the target domain matter?** Each domain's output and the `no l_adv` reference "
        "(the same training without the adversarial term), both projected onto the fibre "
        "values (noise-aware); domain minus reference, paired t-tests over the test crops. "
        "Issue 13's aim: a domain with lower spectrum distance and lower |dGCF vs HR| than the "
        "reference at p < 0.01, and PSNR at most 0.3 dB lower.",
        "",
        adv_table(per, meta["domains"]),
        "",
        f'Best domain by Tot_cs (fixed): **{best}** — used as "proposed" below.',
        "",
        "**Table 2: methods.**",
        "",
        table(per, [best, *others]),
        "",
        "Paired t-tests (`scipy.stats.ttest_rel`) over the test crops, proposed minus other "
        "(positive = proposed higher):",
        "",
        ttests(per, best, others),
        "",
        f"Wiener (tuned): balance {meta['wiener_balance']:.2g} chosen by PSNR on the "
        "training images (it uses their HR, so it is not unsupervised); Wiener: balance "
        "estimated per frame from the noise level and the power spectrum. "
        '"+ projection": the image projected onto the measured fibre values (2 steps of '
        "iterative back-projection, no training; docs/consistency.md).",
    ]
    if abl_out:
        names = ["base", *[k for k in abl_out if k != "base"]]
        lines += [
            "",
            f"**Ablations** (natural target, {budget.ablation_iterations} iterations each, one "
            "change at a time from the base configuration; mean ± sd over the test crops).",
            "",
        ]
        rows = []
        for n in names:
            p = per[f"abl:{n}"]
            what = "loss weights and options at their defaults" if n == "base" else ABLATIONS[n][1]
            rows.append(
                [
                    n,
                    what,
                    fmt_mean_sd(p["ssim"], 3),
                    fmt_mean_sd(p["psnr"], 2),
                    fmt_mean_sd(p["dgcf_ref"], 3),
                    fmt_mean_sd(np.asarray(p["cycle_error"]) * 1e4, 2),
                ]
            )
        lines.append(
            markdown_table(
                ["variant", "change", "SSIM", "PSNR (dB)", "dGCF vs HR", "cycle error x1e-4"],
                rows,
            )
        )
        for n, why in abl_skipped.items():
            lines.append(f"\nSkipped ablation {n!r}: {why}.")
    if real:
        lines += [
            "",
            f"**Real frames** (model trained {real_facts.get('config', {}).get('iterations')} "
            "iterations on the two real TLI reconstructions, natural target; GCF with the "
            "input's [0, p99.5] range; cycle error = mean (V - V^)² over the fibres):",
            "",
        ]
        rows = []
        for n, r in real.items():
            rows.append(
                [
                    n,
                    f"{r['n_fibres']} / {r['spacing']:.2f}",
                    f"{r['gcf_lr']:.3f}",
                    f"{r['gcf_sr']:.3f}",
                    f"{r['gcf_sr'] - r['gcf_lr']:+.3f}",
                    f"{r['cycle_lr']:.2e}",
                    f"{r['cycle_sr']:.2e}",
                ]
            )
        lines.append(
            markdown_table(
                [
                    "frame",
                    "fibres / spacing px",
                    "GCF input",
                    "GCF SR",
                    "dGCF vs input",
                    "cycle error input (TLI)",
                    "cycle error SR",
                ],
                rows,
            )
        )
        for n in real:
            lines.append(f"\n![{n}: input and SR](images/bench_real_{n}_{tag}.png)")
    lines += [
        "",
        f"![target domains](images/bench_domains_{tag}.png)",
        "",
        f"![methods](images/bench_methods_{tag}.png)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
