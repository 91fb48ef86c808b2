"""The one-command demo: the whole method on a built-in picture, with a report.

:func:`run_demo` simulates a pCLE acquisition of a picture that ships with scikit-image (so
the true high-resolution image is known) and compares, against that truth and in one run:
the TLI input, Wiener deconvolution, unsharp masking and the TLI image projected onto the
measured fibre values (:mod:`napari_cycsr.consistency`, no training); the shipped pretrained
model applied as it is (a result within seconds, no training); and that model fine-tuned on
the simulated low-resolution (TLI) image alone. Each network output is shown alone and
projected onto the fibre values ("+ projection"). ``from_scratch=True`` trains a new network
instead of fine-tuning (the demo before pretrained models shipped). It writes a figure
(``demo.png``), a metrics table (``metrics.md``), the model file and the images.
``cycsr demo`` and the tests call this one function.

The default picture, :data:`DEMO_IMAGE`, is held out: it is none of the pretrained model's
training pictures nor of its natural target images, none of the natural target images of
:mod:`napari_cycsr.data`, and none of the benchmarks' test or validation sources
(``tests/test_benchmarks.py`` checks it against the manifest and the benchmark lists).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._imageio import atomic_path, to_unit_float, write_image, write_npy, write_text
from ._pretrained import DEFAULT_PRETRAINED

__all__ = [
    "BUILTIN_IMAGES",
    "DEMO_IMAGE",
    "DEMO_FILES",
    "DemoEvent",
    "DemoResult",
    "builtin_image",
    "resize_longest",
    "run_demo",
]

#: scikit-image pictures that load offline (colour ones are converted to grey).
#: "motorcycle" is the centre square of the left view of ``skimage.data.stereo_motorcycle()``.
BUILTIN_IMAGES: tuple[str, ...] = (
    "motorcycle",
    "camera",
    "astronaut",
    "brick",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "horse",
    "moon",
    "page",
    "rocket",
    "text",
)


def _motorcycle() -> np.ndarray:
    """The centre square of the left view of ``skimage.data.stereo_motorcycle()`` (500 px):
    the simulated bundle's round field of view fits a square picture without waste."""
    from skimage import data

    left = np.asarray(data.stereo_motorcycle()[0])
    h, w = left.shape[:2]
    x0 = (w - h) // 2
    return left[:, x0 : x0 + h]


#: Built-in names that are not a plain ``skimage.data`` function: name -> loader.
_SPECIAL_IMAGES: dict[str, Callable[[], np.ndarray]] = {"motorcycle": _motorcycle}

#: The demo's default picture: a photograph (a motorcycle in a workshop, fine detail and
#: smooth areas) that no shipped model nor any benchmark uses, so the pretrained model's
#: result on it is a result on an unseen picture. ``camera``, the earlier default, is one of
#: the pretrained model's training pictures.
DEMO_IMAGE = "motorcycle"

#: Network preset of the demo: "tiny" trains about 20 times faster than "default" and, at
#: the demo's short budget, scored as well on the validation pictures (docs/performance.md,
#: "The demo in a minute").
DEMO_PRESET = "tiny"
#: Training iterations of the full and the ``quick`` demo.
DEMO_ITERATIONS = {"full": 120, "quick": 30}

#: Files :func:`run_demo` writes into its output folder (an earlier result is never replaced
#: without ``overwrite=True``).
DEMO_FILES: tuple[str, ...] = (
    "demo.png",
    "metrics.md",
    "metrics.json",
    "model.safetensors",
    "hr.tif",
    "lr.tif",
    "sr.tif",
    "sr_projected.tif",
    "sr_pretrained.tif",
    "fibres.csv",
    "values.npy",
)

#: Longer side of the simulated picture, full and quick.
DEMO_SIZE = {"full": 256, "quick": 128}
#: Batch size and patch side of the full and the quick demo.
DEMO_TRAINING: dict[str, dict[str, int]] = {
    "full": {"batch_size": 12, "patch": 64},
    "quick": {"batch_size": 8, "patch": 48},
}
#: Adam learning rate of the demo per preset (others: :class:`TrainConfig`'s 1e-4): the
#: short run of the tiny network learns as much at 3e-4 in half the iterations.
DEMO_LR: dict[str, float] = {"tiny": 3e-4}


def resize_longest(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D image so that its longer side is ``size`` pixels (aspect ratio kept).

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` image.
    size : int
        Length of the longer side after resizing, >= 16.

    Returns
    -------
    ndarray
        float32 image (anti-aliased when shrinking).
    """
    from skimage.transform import resize

    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 16:
        raise ValueError(f"size must be an integer >= 16 pixels, got {size!r}")
    h, w = image.shape
    scale = size / max(h, w)
    shape = (max(16, round(h * scale)), max(16, round(w * scale)))
    if shape == (h, w):
        return image.astype(np.float32)
    out = resize(
        image.astype(np.float32), shape, order=1, anti_aliasing=scale < 1, preserve_range=True
    )
    return out.astype(np.float32)


def builtin_image(name: str, *, size: int | None = None) -> np.ndarray:
    """A greyscale picture that ships with scikit-image, as float32 in ``[0, 1]``.

    Parameters
    ----------
    name : str
        One of :data:`BUILTIN_IMAGES` (no download: these load offline).
    size : int, optional
        Resize so that the longer side is ``size`` pixels.

    Returns
    -------
    ndarray
        ``(H, W)`` float32 in ``[0, 1]``.

    Examples
    --------
    >>> builtin_image("camera", size=64).shape
    (64, 64)
    >>> builtin_image("motorcycle", size=64).shape
    (64, 64)
    """
    if name not in BUILTIN_IMAGES:
        raise ValueError(f"unknown built-in image {name!r}; expected one of {BUILTIN_IMAGES}")
    from skimage import data
    from skimage.color import rgb2gray

    load = _SPECIAL_IMAGES.get(name) or getattr(data, name)
    image = np.asarray(load())
    if image.ndim == 3:
        image = rgb2gray(image[..., :3])
    image = to_unit_float(image)
    if size is not None:
        image = np.clip(resize_longest(image, size), 0.0, 1.0)
    return image.astype(np.float32)


@dataclass(frozen=True)
class DemoEvent:
    """Progress of :func:`run_demo`.

    Attributes
    ----------
    stage : str
        "simulate", "pretrained", "train", "super-resolve", "evaluate" or "write".
    step, total : int
        Progress within the stage (training iterations for "train"; 0 of 1 at the start of
        the other stages, 1 of 1 at their end).
    message : str
        What is happening, for a log line. At the end of "pretrained" (step 1 of 1): the
        pretrained model's PSNR / SSIM against the truth next to TLI's, the first result.
    losses : dict
        The latest training losses (empty outside "train").
    eta_seconds : float or None
        Estimated seconds left in the stage, when known.
    """

    stage: str
    step: int
    total: int
    message: str = ""
    losses: dict[str, float] = field(default_factory=dict)
    eta_seconds: float | None = None


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes
    ----------
    out_dir : Path
        The output folder.
    figure, metrics_md, model_path, sr_path : Path
        ``demo.png``, ``metrics.md``, ``model.safetensors`` (the fine-tuned or trained
        model) and ``sr.tif`` (its output; ``sr_projected.tif`` next to it holds the output
        projected onto the fibre values, ``sr_pretrained.tif`` the pretrained model's).
    rows : list of dict
        The metric rows: TLI, Wiener, Sharpening, TLI + projection, then Pretrained,
        Pretrained + projection, Fine-tuned, Fine-tuned + projection (or, from scratch,
        From scratch and From scratch + projection).
    markdown_table : str
        ``rows`` as a Markdown table.
    images : dict of str to ndarray
        The compared images and the ground truth ("HR").
    model : SRModel
        The trained (fine-tuned) model.
    seconds : float
        Wall-clock time of the whole demo.
    pretrained : str or None
        Name of the pretrained model the demo started from (None: from scratch).
    first_result_seconds : float or None
        Seconds from the start until the pretrained model's result was scored (None: from
        scratch).
    """

    out_dir: Path
    figure: Path
    metrics_md: Path
    model_path: Path
    sr_path: Path
    rows: list[dict[str, Any]]
    markdown_table: str
    images: dict[str, np.ndarray]
    model: Any
    seconds: float
    pretrained: str | None = None
    first_result_seconds: float | None = None


def run_demo(
    out_dir: str | Path = "demo_out",
    *,
    image: str = DEMO_IMAGE,
    size: int | None = None,
    iterations: int | None = None,
    quick: bool = False,
    preset: str = DEMO_PRESET,
    batch_size: int | None = None,
    patch: int | None = None,
    seed: int = 0,
    spacing: float | None = None,
    noise: float = 0.01,
    device: str = "auto",
    progress: Callable[[DemoEvent], None] | None = None,
    lr: float | None = None,
    precision: str = "auto",
    threads: int | None = None,
    overwrite: bool = False,
    from_scratch: bool = False,
    pretrained: str = DEFAULT_PRETRAINED,
) -> DemoResult:
    """Simulate pCLE from a built-in picture; pretrained result, fine-tune, report.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created). Receives ``demo.png``, ``metrics.md``,
        ``model.safetensors``, ``hr.tif``, ``lr.tif``, ``sr.tif``, ``sr_projected.tif``,
        ``sr_pretrained.tif`` (not from scratch), ``fibres.csv``, ``values.npy`` and
        ``metrics.json``.
    image : str
        Built-in picture (:data:`BUILTIN_IMAGES`) used as the unknown ground truth
        (default :data:`DEMO_IMAGE`, which no shipped model has seen). It is left out of
        the natural-image target domain of the fine-tuning; when the pretrained model saw
        it (its manifest's ``pretrain_images`` and ``target_images``), ``metrics.md`` says so.
    size : int, optional
        Longer side of the picture in pixels (default 256, or 128 with ``quick``).
    iterations : int, optional
        Training (fine-tuning) iterations (default :data:`DEMO_ITERATIONS`).
    quick : bool
        Short run (smaller picture, fewer iterations) to check that everything works.
    preset : str
        Network size: "tiny" (default, :data:`DEMO_PRESET`), "default" or "paper". Unless
        ``from_scratch``, it must be the pretrained model's preset.
    batch_size : int, optional
        Patches per training step (default :data:`DEMO_TRAINING`).
    patch : int, optional
        Side of the training patches in pixels (default :data:`DEMO_TRAINING`; at most
        about 0.7 times ``size``, so that patches fit inside the round field of view).
    seed : int
        Seeds the simulation and the training.
    spacing : float, optional
        Fibre spacing in pixels (default: :data:`napari_cycsr.simulate.DEFAULT_SPACING`,
        about one fibre per 6 pixels). The pretrained model resamples other spacings to
        its own (:func:`~napari_cycsr.inference.super_resolve`, ``match_spacing``).
    noise : float
        Standard deviation of the noise on the fibre values (image range 0-1).
    device : str
        Torch device for training and inference ("auto": CUDA, MPS, then CPU).
    progress : callable, optional
        Called with a :class:`DemoEvent` at each stage and training step.
    lr : float, optional
        Adam learning rate (default :data:`DEMO_LR` for the preset, else 1e-4).
    precision : str
        "auto", "fp32", "bf16" or "fp16" (:func:`napari_cycsr._device.resolve_precision`).
    threads : int, optional
        CPU threads of torch (default: automatic, from the machine's load).
    overwrite : bool
        Replace the files of an earlier demo in ``out_dir``. Without it, a folder that
        already holds any of :data:`DEMO_FILES` is refused before any work starts.
    from_scratch : bool
        Train a new network (the :class:`TrainConfig` losses) instead of scoring and then
        fine-tuning the pretrained model.
    pretrained : str
        The pretrained model to start from (:func:`napari_cycsr.list_pretrained`). It is
        fine-tuned with the loss settings it was trained with (its
        ``metadata["train_config"]``: the do-no-harm settings of docs/pretrained.md) and its
        intensity normalisation, and the demo's iterations, batch, patches and learning
        rate.

    Returns
    -------
    DemoResult

    Examples
    --------
    >>> result = run_demo("demo_out", quick=True)  # doctest: +SKIP
    >>> print(result.markdown_table)  # doctest: +SKIP
    """
    from ._pretrained import list_pretrained
    from ._pretrained import pretrained as load_pretrained
    from .baselines import sharpen, wiener
    from .consistency import project_consistent
    from .data import NATURAL_IMAGES, natural_images
    from .inference import super_resolve
    from .io import save_model
    from .metrics import evaluate, format_table, psnr, ssim
    from .simulate import simulate_pcle
    from .training import TrainConfig, Trainer

    if image not in BUILTIN_IMAGES:
        raise ValueError(f"unknown built-in image {image!r}; expected one of {BUILTIN_IMAGES}")
    mode = "quick" if quick else "full"
    size = DEMO_SIZE[mode] if size is None else size
    iterations = DEMO_ITERATIONS[mode] if iterations is None else iterations
    if not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    defaults = DEMO_TRAINING[mode]
    start = None
    losses: dict[str, Any] = {}
    if not from_scratch:
        start = load_pretrained(pretrained, device="cpu")
        theirs = start.metadata.get("train_config", {}).get("preset")
        if theirs != preset:
            raise ValueError(
                f"the pretrained model {pretrained!r} is a {theirs!r} network, not {preset!r}: "
                f"use preset={theirs!r} or from_scratch=True (--from-scratch)"
            )
        losses = _recipe_losses(start)
    config = TrainConfig(
        preset=preset,
        iterations=int(iterations),
        batch_size=defaults["batch_size"] if batch_size is None else batch_size,
        patch=defaults["patch"] if patch is None else patch,
        learning_rate=DEMO_LR.get(preset, TrainConfig.learning_rate) if lr is None else lr,
        seed=seed,
        device=device,
        precision=precision,
        threads=threads,
        preview_every=0,
        checkpoint_every=0,
        **losses,
    )
    out = Path(out_dir)
    existing = [name for name in DEMO_FILES if (out / name).exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise FileExistsError(
            f"{out} already holds the result of an earlier demo ({shown}); choose another "
            "output folder (--out) or pass --overwrite to replace it"
        )
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:  # no stale file of an earlier run (e.g. sr_pretrained.tif) stays behind
        for name in existing:
            (out / name).unlink()
    started = time.perf_counter()

    def report(stage: str, step: int, total: int, message: str = "", **kw: Any) -> None:
        if progress is not None:
            progress(DemoEvent(stage, step, total, message, **kw))

    # 1. simulate, TLI and the training-free baselines --------------------------------
    report("simulate", 0, 1, f"simulating pCLE of the picture {image!r} ({size} px)")
    hr = builtin_image(image, size=size)
    sim = simulate_pcle(hr, spacing=spacing, noise=noise, seed=seed)
    bundle = sim.bundle
    mask = bundle.fov_mask
    lr = np.asarray(sim.lr, dtype=np.float32)
    measured = np.asarray(sim.values, dtype=np.float32)
    images: dict[str, np.ndarray] = {
        "TLI": lr,
        "Wiener": np.asarray(wiener(lr, bundle.spacing, mask=mask), dtype=np.float32),
        "Sharpening": np.asarray(sharpen(lr, mask=mask, spacing=bundle.spacing), np.float32),
        "TLI + projection": project_consistent(lr, bundle, measured),
    }
    report("simulate", 1, 1, f"{bundle.n_fibres} fibres, spacing {bundle.spacing:.2f} px")

    def quick_scores(img: np.ndarray) -> str:
        return f"{psnr(img, hr, mask=mask):.2f} dB / SSIM {ssim(img, hr, mask=mask):.3f}"

    run_options = {"device": device, "mask": mask, "precision": precision, "threads": threads}
    first_result = None
    seen: bool | None = None
    if start is not None:
        # 2. the pretrained model as it ships: a result within seconds -----------------
        report("pretrained", 0, 1, f"super-resolving with the pretrained model {pretrained!r}")
        entry = {m["name"]: m for m in list_pretrained()}[pretrained]
        pictures = entry.get("pretrain_images", []) + entry.get("target_images", [])
        seen = (image in pictures) if pictures else None  # None: the manifest does not say
        sr_pre = super_resolve(start, lr, spacing=bundle.spacing, **run_options)
        sr_pre = np.asarray(sr_pre, dtype=np.float32)
        images["Pretrained"] = sr_pre
        images["Pretrained + projection"] = project_consistent(sr_pre, bundle, measured)
        write_image(out / "sr_pretrained.tif", sr_pre)
        first_result = time.perf_counter() - started
        report(
            "pretrained",
            1,
            1,
            f"after {first_result:.1f} s: TLI {quick_scores(lr)}; pretrained "
            f"{quick_scores(sr_pre)}; pretrained + projection "
            f"{quick_scores(images['Pretrained + projection'])} (against the truth)"
            + (" - note: the pretrained model saw this picture in training" if seen else ""),
        )

    # 3. train: fine-tune the pretrained model, or a new one --------------------------
    what = f"fine-tuning {pretrained!r}" if start is not None else "training from scratch"
    report("train", 0, iterations, f"{what} ({preset} preset, {iterations} iterations)")
    targets = natural_images([n for n in NATURAL_IMAGES if n != image])
    trainer = Trainer(
        [lr],
        [bundle],
        target="images",
        config=config,
        values=[measured],
        target_images=targets,
        init=start,
        # the pretrained model's own intensity scaling: fine-tuning then starts from the
        # very function that gave the "Pretrained" row (the LR image's percentiles would
        # rescale its input, here by about 1.25, and start elsewhere)
        normalisation=None if start is None else dict(start.metadata["normalisation"]),
    )
    for event in trainer.run():
        report(
            "train",
            int(event.iteration),
            int(event.total),
            losses={k: float(v) for k, v in event.losses.items()},
            eta_seconds=event.eta_seconds,
        )
    model = trainer.model
    model_path = save_model(model, out / "model.safetensors")
    model_path = Path(model_path) if model_path is not None else out / "model.safetensors"

    # 4. super-resolve -----------------------------------------------------------------
    report("super-resolve", 0, 1, "super-resolving with the trained model")
    sr = np.asarray(super_resolve(model, lr, **run_options), dtype=np.float32)
    name = "Fine-tuned" if start is not None else "From scratch"
    images[name] = sr
    images[f"{name} + projection"] = project_consistent(sr, bundle, measured)
    report("super-resolve", 1, 1)

    # 5. evaluate ----------------------------------------------------------------------
    report("evaluate", 0, 1, "computing PSNR, SSIM, GCF, dGCF and Tot_cs")
    rows = evaluate(images, reference=hr, lr=lr, mask=mask, bundle=bundle, values=sim.values)
    table = format_table(rows).rstrip("\n")
    report("evaluate", 1, 1)

    # 6. write --------------------------------------------------------------------------
    report("write", 0, 1, f"writing results to {out}")
    write_image(out / "hr.tif", hr)
    write_image(out / "lr.tif", lr)
    sr_path = write_image(out / "sr.tif", sr)
    write_image(out / "sr_projected.tif", images[f"{name} + projection"])
    write_npy(out / "values.npy", measured)
    bundle.save_csv(out / "fibres.csv")
    figure = _write_figure(out / "demo.png", {**images, "Ground truth": hr}, rows, mask)
    seconds = time.perf_counter() - started
    settings = {
        "image": image,
        "shape": list(hr.shape),
        "n_fibres": int(bundle.n_fibres),
        "spacing": round(float(bundle.spacing), 3),
        "noise": float(noise),
        "preset": preset,
        "pretrained": None if start is None else pretrained,
        "pretrained_saw_image": seen,
        "iterations": int(iterations),
        "batch_size": config.effective_batch_size,
        "patch": config.patch,
        "lr": config.learning_rate,
        "losses": {
            k: config.to_dict()[k] for k in ("vec_tolerance", "w_res", "w_anchor", "augment_lr")
        },
        "precision": trainer.precision,
        "seed": int(seed),
        "device": str(trainer.device),
        "first_result_seconds": None if first_result is None else round(first_result, 1),
        "seconds": round(seconds, 1),
    }
    metrics_md = write_text(out / "metrics.md", _metrics_document(table, settings))
    write_text(
        out / "metrics.json",
        json.dumps({"settings": settings, "rows": _jsonable(rows)}, indent=2) + "\n",
    )
    report("write", 1, 1)
    return DemoResult(
        out_dir=out,
        figure=figure,
        metrics_md=metrics_md,
        model_path=model_path,
        sr_path=sr_path,
        rows=rows,
        markdown_table=table,
        images={**images, "HR": hr},
        model=model,
        seconds=seconds,
        pretrained=None if start is None else pretrained,
        first_result_seconds=first_result,
    )


def _recipe_losses(model: Any) -> dict[str, Any]:
    """The loss and LR-augmentation settings ``model`` was trained with (TrainConfig fields).

    Fine-tuning keeps the pretrained model's objective, so that a short run does not pull it
    away from the do-no-harm settings it was chosen with; iterations, batch, patches and
    learning rate are the demo's.
    """
    from .config import recipe_losses

    return recipe_losses(model.metadata.get("train_config"))


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        clean = {}
        for key, value in row.items():
            if isinstance(value, (np.floating, float)):
                value = float(value) if np.isfinite(value) else None
            elif isinstance(value, np.integer):
                value = int(value)
            clean[key] = value
        out.append(clean)
    return out


def _metrics_document(table: str, settings: dict[str, Any]) -> str:
    h, w = settings["shape"]
    name = settings["pretrained"]
    if name is None:
        how = (
            f"The model ({settings['preset']} preset, {settings['iterations']} iterations, seed "
            f"{settings['seed']}) was trained from scratch on the simulated TLI image only"
        )
    else:
        seen = {
            True: " (note: this picture is one of that model's training pictures, so the "
            '"Pretrained" rows are not a result on an unseen picture)',
            False: " (it never saw this picture)",
            None: "",
        }[settings["pretrained_saw_image"]]
        how = (
            f'"Pretrained": the shipped pretrained model `{name}` applied as it is, no '
            f"training{seen}; its result was scored {settings['first_result_seconds']} s "
            f'after the start. "Fine-tuned": that model fine-tuned for '
            f"{settings['iterations']} iterations (seed {settings['seed']}) with the loss "
            "settings it was trained with, on the simulated TLI image only"
        )
    return (
        "# napari-cycsr demo\n\n"
        f"Simulated pCLE of the scikit-image picture `{settings['image']}` ({h}x{w} px, "
        f"{settings['n_fibres']} fibres, spacing {settings['spacing']} px, fibre-value noise "
        f"{settings['noise']}). {how}, with other built-in pictures as the unpaired target "
        'domain; the ground truth is used for scoring only. "+ projection": the image '
        "projected onto the measured fibre values (noise-aware back-projection that stops at "
        "the noise level of the values, no training; docs/consistency.md). Metrics are "
        "computed inside the fibre bundle's field of view.\n\n"
        f"{table}\n\n"
        "Columns: PSNR (dB) and SSIM against the true image; GCF, the global contrast factor; "
        "dgcf_ref and dgcf_lr, the change of GCF against the true image and against the TLI "
        "input; cycle_error, the mean squared difference between the measured fibre values "
        "and the image averaged over each fibre's Voronoi cell; tot_cs, the composite score "
        "(mean of min-max normalised SSIM and dgcf_ref over these rows).\n\n"
        f"Run time: {settings['seconds']} s on device `{settings['device']}`. "
        "Reproduce with `cycsr demo` (see docs/cli.md); metric definitions in docs/metrics.md.\n"
    )


def _write_figure(
    path: Path, images: dict[str, np.ndarray], rows: list[dict[str, Any]], mask: np.ndarray
) -> Path:
    """Full images on top, a zoomed crop below, one column per method."""
    from matplotlib.figure import Figure

    names = list(images)
    ys, xs = np.nonzero(mask)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    h, w = mask.shape
    half = max(8, min(h, w) // 8)
    y0, x0 = max(0, cy - half), max(0, cx - half)
    crop = (slice(y0, min(h, y0 + 2 * half)), slice(x0, min(w, x0 + 2 * half)))
    by_name = {str(r.get("method", "")): r for r in rows}

    fig = Figure(figsize=(2.2 * len(names), 5.0), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    for j, name in enumerate(names):
        img = np.asarray(images[name], dtype=np.float32)
        title = name
        row = by_name.get(name)
        if row is not None:
            parts = []
            if "psnr" in row:
                parts.append(f"{float(row['psnr']):.1f} dB")
            if "ssim" in row:
                parts.append(f"SSIM {float(row['ssim']):.3f}")
            if parts:
                title += "\n" + ", ".join(parts)
        axes[0, j].imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axes[0, j].add_patch(_rectangle(crop))
        axes[0, j].set_title(title, fontsize=9)
        axes[1, j].imshow(img[crop], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel("zoom", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def _rectangle(crop: tuple[slice, slice]) -> Any:
    from matplotlib.patches import Rectangle

    (ys, xs) = crop
    return Rectangle(
        (xs.start - 0.5, ys.start - 0.5),
        xs.stop - xs.start,
        ys.stop - ys.start,
        fill=False,
        edgecolor="#ffcc00",
        linewidth=1.0,
    )
