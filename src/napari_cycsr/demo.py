"""The one-command demo: the whole method on a built-in picture, with a report.

:func:`run_demo` simulates a pCLE acquisition of a picture that ships with scikit-image (so
the true high-resolution image is known), trains a super-resolution model on the simulated
low-resolution (TLI) image alone, super-resolves it, and compares the result with the TLI
input, Wiener deconvolution, unsharp masking and the TLI image projected onto the measured
fibre values (:mod:`napari_cycsr.consistency`, no training); the network output is shown
alone ("CycSR") and projected onto the fibre values ("CycSR + projection"). It writes a
figure (``demo.png``), a metrics table (``metrics.md``), the model file and the images.
``cycsr demo`` and the tests call this one function.
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

__all__ = [
    "BUILTIN_IMAGES",
    "DEMO_FILES",
    "DemoEvent",
    "DemoResult",
    "builtin_image",
    "resize_longest",
    "run_demo",
]

#: scikit-image pictures that load offline (colour ones are converted to grey).
BUILTIN_IMAGES: tuple[str, ...] = (
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
    """
    if name not in BUILTIN_IMAGES:
        raise ValueError(f"unknown built-in image {name!r}; expected one of {BUILTIN_IMAGES}")
    from skimage import data
    from skimage.color import rgb2gray

    image = np.asarray(getattr(data, name)())
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
        "simulate", "train", "super-resolve", "evaluate" or "write".
    step, total : int
        Progress within the stage (training iterations for "train"; 0 of 1 at the start of
        the other stages, 1 of 1 at their end).
    message : str
        What is happening, for a log line.
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
        ``demo.png``, ``metrics.md``, ``model.safetensors`` and ``sr.tif`` (the network
        output; ``sr_projected.tif`` next to it holds "CycSR + projection").
    rows : list of dict
        The metric rows (TLI, Wiener, Sharpening, TLI + projection, CycSR,
        CycSR + projection).
    markdown_table : str
        ``rows`` as a Markdown table.
    images : dict of str to ndarray
        The compared images and the ground truth ("HR").
    model : SRModel
        The trained model.
    seconds : float
        Wall-clock time of the whole demo.
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


def run_demo(
    out_dir: str | Path = "demo_out",
    *,
    image: str = "camera",
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
) -> DemoResult:
    """Simulate pCLE from a built-in picture, train, super-resolve and report.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created). Receives ``demo.png``, ``metrics.md``,
        ``model.safetensors``, ``hr.tif``, ``lr.tif``, ``sr.tif``, ``sr_projected.tif``,
        ``fibres.csv``,
        ``values.npy`` and ``metrics.json``.
    image : str
        Built-in picture (:data:`BUILTIN_IMAGES`) used as the unknown ground truth. It is left
        out of the natural-image target domain, so training never sees it.
    size : int, optional
        Longer side of the picture in pixels (default 256, or 128 with ``quick``).
    iterations : int, optional
        Training iterations (default :data:`DEMO_ITERATIONS`).
    quick : bool
        Short run (smaller picture, fewer iterations) to check that everything works.
    preset : str
        Network size: "tiny" (default, :data:`DEMO_PRESET`), "default" or "paper".
    batch_size : int, optional
        Patches per training step (default :data:`DEMO_TRAINING`).
    patch : int, optional
        Side of the training patches in pixels (default :data:`DEMO_TRAINING`; at most
        about 0.7 times ``size``, so that patches fit inside the round field of view).
    seed : int
        Seeds the simulation and the training.
    spacing : float, optional
        Fibre spacing in pixels (default: :data:`napari_cycsr.simulate.DEFAULT_SPACING`,
        about one fibre per 6 pixels).
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

    Returns
    -------
    DemoResult

    Examples
    --------
    >>> result = run_demo("demo_out", quick=True)  # doctest: +SKIP
    >>> print(result.markdown_table)  # doctest: +SKIP
    """
    from .baselines import sharpen, wiener
    from .consistency import project_consistent
    from .data import NATURAL_IMAGES, natural_images
    from .inference import super_resolve
    from .io import save_model
    from .metrics import evaluate, format_table
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
    started = time.perf_counter()

    def report(stage: str, step: int, total: int, message: str = "", **kw: Any) -> None:
        if progress is not None:
            progress(DemoEvent(stage, step, total, message, **kw))

    # 1. simulate ---------------------------------------------------------------------
    report("simulate", 0, 1, f"simulating pCLE of the picture {image!r} ({size} px)")
    hr = builtin_image(image, size=size)
    sim = simulate_pcle(hr, spacing=spacing, noise=noise, seed=seed)
    bundle = sim.bundle
    mask = bundle.fov_mask
    lr = np.asarray(sim.lr, dtype=np.float32)
    report("simulate", 1, 1, f"{bundle.n_fibres} fibres")

    # 2. train --------------------------------------------------------------------------
    report("train", 0, iterations, f"training ({preset} preset, {iterations} iterations)")
    targets = natural_images([n for n in NATURAL_IMAGES if n != image])
    trainer = Trainer(
        [lr],
        [bundle],
        target="images",
        config=config,
        values=[np.asarray(sim.values, dtype=np.float32)],
        target_images=targets,
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

    # 3. super-resolve + baselines ------------------------------------------------------
    report("super-resolve", 0, 1, "super-resolving and computing the baselines")
    measured = np.asarray(sim.values, dtype=np.float32)
    sr = super_resolve(model, lr, device=device, mask=mask, precision=precision, threads=threads)
    sr = np.asarray(sr, dtype=np.float32)
    sr_projected = project_consistent(sr, bundle, measured)  # the network runs once
    tli_projected = project_consistent(lr, bundle, measured)
    wiener_img = np.asarray(wiener(lr, bundle.spacing, mask=mask), dtype=np.float32)
    sharp_img = np.asarray(sharpen(lr, mask=mask, spacing=bundle.spacing), dtype=np.float32)
    report("super-resolve", 1, 1)

    # 4. evaluate ----------------------------------------------------------------------
    report("evaluate", 0, 1, "computing PSNR, SSIM, GCF, dGCF and Tot_cs")
    images = {
        "TLI": lr,
        "Wiener": wiener_img,
        "Sharpening": sharp_img,
        "TLI + projection": tli_projected,
        "CycSR": sr,
        "CycSR + projection": sr_projected,
    }
    rows = evaluate(images, reference=hr, lr=lr, mask=mask, bundle=bundle, values=sim.values)
    table = format_table(rows).rstrip("\n")
    report("evaluate", 1, 1)

    # 5. write --------------------------------------------------------------------------
    report("write", 0, 1, f"writing results to {out}")
    write_image(out / "hr.tif", hr)
    write_image(out / "lr.tif", lr)
    sr_path = write_image(out / "sr.tif", sr)
    write_image(out / "sr_projected.tif", sr_projected)
    write_npy(out / "values.npy", np.asarray(sim.values, dtype=np.float32))
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
        "iterations": int(iterations),
        "batch_size": config.effective_batch_size,
        "patch": config.patch,
        "lr": config.learning_rate,
        "precision": trainer.precision,
        "seed": int(seed),
        "device": str(trainer.device),
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
    )


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
    return (
        "# napari-cycsr demo\n\n"
        f"Simulated pCLE of the scikit-image picture `{settings['image']}` ({h}x{w} px, "
        f"{settings['n_fibres']} fibres, spacing {settings['spacing']} px, fibre-value noise "
        f"{settings['noise']}). The model ({settings['preset']} preset, "
        f"{settings['iterations']} iterations, seed {settings['seed']}) was trained on the "
        "simulated TLI image only, with other built-in pictures as the unpaired target domain; "
        'the ground truth is used for scoring only. "+ projection": the image projected '
        "onto the measured fibre values (noise-aware back-projection that stops at the "
        "noise level of the values, no training; docs/consistency.md). Metrics are computed "
        "inside the fibre bundle's field of view.\n\n"
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

    fig = Figure(figsize=(2.6 * len(names), 5.6), layout="constrained")
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
