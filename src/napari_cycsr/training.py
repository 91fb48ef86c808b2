"""Training: the adversarial loop with Voronoi cycle consistency (Ravì et al., Section 3).

Every iteration draws a batch of LR patches (with their fibre cells) and a batch of target
patches, then

1. updates the discriminator ``DS`` by binary cross-entropy, real target patches against
   super-resolved ones, white noise added to both (Eq. 1);
2. updates the generator ``SR`` by ``w_vec * l_vec + w_adv * l_adv + w_reg * l_reg`` (Eq. 3).

:class:`Trainer` runs this as a *generator of progress events* (:meth:`Trainer.run`), so a GUI
thread, a command line progress bar or a script can drive it, stop it (:meth:`Trainer.stop`)
and resume it bit-exactly from a checkpoint (:meth:`Trainer.resume`). One seed drives every
random choice through explicit ``torch.Generator`` / ``numpy.random.Generator`` objects.

Under ``torchrun`` (``WORLD_SIZE > 1``) the same code trains with DistributedDataParallel:
each rank draws its own patches, gradients are averaged, and only rank 0 yields events and
writes files.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._device import (
    autocast,
    memory_format,
    resolve_precision,
    thread_scope,
)
from ._validate import positive_spacing
from .config import CHECKPOINT_NAME, TrainConfig
from .data import (
    LRPatchSampler,
    TargetSampler,
    _broadcast_bundles,
    dihedral,
    resample_frame,
    resample_to_spacing,
    spacing_zoom,
    undo_dihedral,
    zoomed_shape,
)
from .losses import (
    PAPER_FIBRES_PER_PATCH,
    add_instance_noise,
    consistency_layer,
    discriminator_loss,
    highpass,
    l_adv,
    l_pix,
    l_reg,
    l_vec,
    l_vec_noise_aware,
    smooth_cells,
    voronoi_means,
)
from .models import Discriminator, Generator, SRModel

__all__ = ["TrainConfig", "TrainEvent", "Trainer", "train"]


_CHECKPOINT_KIND = "napari-cycsr training state"
_LOSS_KEYS = (
    "l_vec", "l_multi", "l_adv", "l_reg", "l_pix", "l_anchor", "loss_g", "loss_d", "d_accuracy",
)  # fmt: skip
#: Losses only some runs have (a NaN in a restored history row means "not in this run").
_OPTIONAL_LOSSES = ("l_multi", "l_pix", "l_anchor")
#: Prefix of the frozen initial generator's weights in a checkpoint (``w_anchor``).
_ANCHOR_PREFIX = "anchor."
_MAX_HISTORY_POINTS = 500
#: TrainConfig fields that describe the machine's run, not the model: kept in checkpoints
#: (for resuming), left out of the model metadata.
_RUN_ONLY_FIELDS = ("precision", "threads")
#: Smoothing of the training-time consistency layer, in fibre spacings (0.4: each step cuts
#: the cycle error of TLI patches several-fold while keeping the correction smooth).
_CONSISTENCY_SIGMA = 0.4
#: Smooth part of the residuals in the noise-aware l_vec: a Gaussian of this many spacings.
_SMOOTH_SPACINGS = 2.0


@dataclass
class TrainEvent:
    """Progress of one training iteration (yielded by :meth:`Trainer.run`).

    Attributes
    ----------
    iteration : int
        Iterations completed (1-based after the first).
    total : int
        Iterations of the run.
    losses : dict[str, float]
        ``l_vec``, ``l_adv``, ``l_reg``, ``loss_g`` (Eq. 3), ``loss_d`` (Eq. 1), and
        ``l_pix`` when a supervised pixel loss is used.
    d_accuracy : float
        Fraction of the discriminator's correct decisions on this batch (real and fake).
        ``loss_d`` and ``d_accuracy`` are NaN during ``warmup`` (no discriminator step).
    seconds_per_iteration : float
        Median duration of the recent iterations.
    eta_seconds : float
        Estimated time to the end of the run.
    preview : numpy.ndarray or None
        float32 SR of the fixed preview crop (input intensity units), every
        ``preview_every`` iterations and at the end, else ``None``.
    checkpoint : str or None
        Path of the checkpoint written at this iteration, else ``None``.
    stopped : bool
        True on the last event of a run ended by :meth:`Trainer.stop`.
    """

    iteration: int
    total: int
    losses: dict[str, float]
    d_accuracy: float
    seconds_per_iteration: float
    eta_seconds: float
    preview: np.ndarray | None = None
    checkpoint: str | None = None
    stopped: bool = False

    @property
    def done(self) -> bool:
        return self.iteration >= self.total


# ----------------------------------------------------------------------------- helpers
def _resolve_device(name: str) -> torch.device:
    from ._device import resolve_device

    return torch.device(resolve_device(name))


def _distributed() -> tuple[int, int]:
    """``(rank, world_size)`` from the torchrun environment (``(0, 1)`` otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def _checkpoint_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        return path / CHECKPOINT_NAME
    return path


def _thin_history(history: list[dict[str, float]], points: int) -> dict[str, list[float]]:
    """Average the per-iteration losses into at most ``points`` consecutive bins."""
    if not history:
        return {"iteration": []}
    n = len(history)
    edges = np.linspace(0, n, min(points, n) + 1).astype(int)
    keys = [k for k in _LOSS_KEYS if k in history[0]]
    out: dict[str, list[float]] = {"iteration": [int(e) for e in edges[1:]]}
    for k in keys:
        values = np.array([h.get(k, np.nan) for h in history], dtype=np.float64)
        out[k] = [float(np.mean(values[a:b])) for a, b in zip(edges[:-1], edges[1:])]
    return out


def _load_initial_weights(generator: nn.Module, init: Any) -> None:
    """Copy ``init``'s generator weights into ``generator`` (same network), or raise."""
    if not isinstance(init, SRModel):
        raise TypeError(f"init must be an SRModel, got {type(init).__name__}")
    mine = generator.config.to_dict()
    theirs = init.generator.config.to_dict()
    if mine != theirs:
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        raise ValueError(
            "init's network differs from the training config's (init, config): "
            f"{diff}; choose the preset, scale and residual of the initial model"
        )
    state = {k: v.detach().to("cpu").clone() for k, v in init.generator.state_dict().items()}
    generator.load_state_dict(state, strict=True)


def _spectral_norm(module: nn.Module) -> None:
    """Spectral normalisation (Miyato et al. 2018) of every conv and dense layer, in place."""
    from torch.nn.utils.parametrizations import spectral_norm

    for child in list(module.modules()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            spectral_norm(child)


def _default_preview_crop(mask: np.ndarray, size: int = 256) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        h, w = mask.shape
        return 0, 0, min(h, size), min(w, size)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = min(size, y1 - y0), min(size, x1 - x0)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    return int(cy - h // 2), int(cx - w // 2), int(h), int(w)


def _work_spacing(spacing: Any, init: SRModel | None, config: TrainConfig) -> float | None:
    """The fibre spacing a run learns at (``Trainer(fibre_spacing=)``), None: the frames'."""
    if spacing is None:
        return None
    if isinstance(spacing, str):
        if spacing != "auto":
            raise ValueError(f"fibre_spacing must be a number, 'auto' or None, got {spacing!r}")
        if init is None or not config.match_spacing or not isinstance(init.metadata, dict):
            return None
        return positive_spacing(init.metadata.get("fibre_spacing"))
    number = positive_spacing(spacing)
    if number is None:
        raise ValueError(
            f"fibre_spacing must be a positive number of pixels, 'auto' or None, got {spacing!r}"
        )
    return number


def _first_frame(images: Any) -> np.ndarray:
    """The first frame of the first image (float32), as the sampler reads it."""
    item = np.asarray(images[0] if isinstance(images, (list, tuple)) else images)
    return item.reshape(-1, *item.shape[-2:])[0].astype(np.float32)


def _check_noise_levels(levels: Any, n_images: int) -> list[float | None]:
    """``Trainer(noise_levels=)``: one finite level >= 0 (or None) per image."""
    if levels is None:
        return [None] * n_images
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__"):
        raise TypeError(
            f"noise_levels must be a sequence with one level (or None) per image, got "
            f"{type(levels).__name__}"
        )
    levels = list(levels)
    if len(levels) != n_images:
        raise ValueError(f"noise_levels has {len(levels)} entries for {n_images} training images")
    out: list[float | None] = []
    for level in levels:
        if level is None:
            out.append(None)
            continue
        if isinstance(level, bool) or not isinstance(level, (int, float, np.number)):
            raise TypeError(f"noise_levels: {level!r} is not a number")
        if not math.isfinite(float(level)) or float(level) < 0:
            raise ValueError(f"noise_levels must be finite and >= 0, got {level!r}")
        out.append(float(level))
    return out


# ----------------------------------------------------------------------------- trainer
class Trainer:
    """Trains a super-resolution model on LR images, with no high-resolution pairs.

    Parameters
    ----------
    lr_images : array_like or list of array_like
        LR (TLI-reconstructed) images ``(H, W)`` or stacks ``(T, H, W)``.
    bundles : FibreBundle or list of FibreBundle
        The fibre bundle of each image (or one shared).
    target : str, optional
        Target domain ("natural", "images", "downscaled", "paired"); overrides
        ``config.target`` when given.
    config : TrainConfig, optional
        Hyper-parameters (default :class:`TrainConfig()`).
    values : array_like or list, optional
        Raw measured fibre values per image (``(N,)`` or ``(T, N)``); default: the LR
        image sampled at the fibre centres (exact for a TLI image).
    target_images : array_like or list, optional
        HR images for ``target="images"`` or ``"paired"``.
    checkpoint : str or path, optional
        Checkpoint file, or a folder to hold ``checkpoint.safetensors``; default
        ``config.checkpoint_dir``. Written every ``checkpoint_every`` iterations, at the end,
        on :meth:`stop` and when the event generator is closed or interrupted.
    preview_crop : (y0, x0, h, w), optional
        Crop of the first frame of the first image shown in previews (default: a central
        crop of the field of view, at most 256 x 256).
    normalisation : dict, optional
        ``{"low", "high"}`` intensity range (default: robust percentiles of the LR images).
    init : SRModel, optional
        Start the generator from this model's weights (fine-tuning, e.g. a pretrained
        model from :func:`napari_cycsr.pretrained`); its network (preset, scale, residual)
        must be the config's. The discriminator and the optimisers start fresh. The
        intensity normalisation is the model's own unless ``normalisation`` is given, so
        fine-tuning starts from the very function the model computes at inference (a
        normalisation from the new images would rescale its input and output).
    registration : Registration, array or list, optional
        Motion of every image's frames, for the multi-frame cycle consistency
        (``config.w_multi > 0``): per image a :class:`~napari_cycsr.video.Registration`
        (from :func:`napari_cycsr.video.register`), a ``(T, 2)`` array of ``(dy, dx)``
        shifts, or ``None`` (see :class:`~napari_cycsr.data.LRPatchSampler`'s ``poses``).
    fibre_spacing : float, "auto" or None, optional
        Fibre spacing (px) the network learns at: frames whose bundle spacing differs from
        it by more than 5 % are resampled to it first, with their bundles, fibre values,
        registration and paired targets (:func:`~napari_cycsr.data.resample_to_spacing`),
        and the model records it (``metadata["fibre_spacing"]``), so
        :func:`~napari_cycsr.inference.super_resolve` resamples other frames to it.
        "auto" (default): the initial model's recorded spacing when fine-tuning with
        ``config.match_spacing`` (as inference runs that model), else the frames' own.
        None: the frames' own. Previews stay on the first frame's grid.
    noise_levels : sequence of float or None, optional
        Noise standard deviation of each image's fibre values, in the values' units, for
        the noise-aware ``l_vec`` (``config.vec_tolerance``): one per image, ``None``
        entries (and the default) estimated from that image's values alone
        (:func:`~napari_cycsr.consistency.estimate_noise`). A video knows better:
        :func:`~napari_cycsr.workflows.video_training` gives the level estimated from the
        video (:func:`~napari_cycsr.video.estimate_video_noise`). ``config.noise_level``,
        when set, wins over both.

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle
    >>> sim = simulate_pcle(data.camera()[:128, 192:320], seed=0)
    >>> config = TrainConfig(preset="tiny", iterations=2, batch_size=2, patch=32,
    ...                      device="cpu", preview_every=0)
    >>> trainer = Trainer(sim.lr, sim.bundle, config=config, values=sim.values)
    >>> [event.iteration for event in trainer.run()]
    [1, 2]
    >>> trainer.model.scale
    1
    """

    def __init__(
        self,
        lr_images: Any,
        bundles: Any,
        target: str | None = None,
        config: TrainConfig | None = None,
        *,
        values: Any = None,
        target_images: Any = None,
        checkpoint: str | os.PathLike[str] | None = None,
        preview_crop: tuple[int, int, int, int] | None = None,
        normalisation: dict[str, float] | None = None,
        init: SRModel | None = None,
        registration: Any = None,
        fibre_spacing: float | str | None = "auto",
        noise_levels: Any = None,
    ) -> None:
        if config is None:
            config = TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if target is not None and target != config.target:
            config = dataclasses.replace(config, target=target)
        self.config = config
        self.rank, self.world_size = _distributed()
        self.is_main = self.rank == 0
        self.device = self._setup_device()
        #: autocast dtype of the forward passes (None: float32), from ``config.precision``
        self.autocast_dtype = resolve_precision(config.precision, self.device)
        self._setup_process_group()

        seed = config.seed
        self._np_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(self.rank,)))
        self._torch_rng = torch.Generator(device="cpu")
        self._torch_rng.manual_seed(seed * 1000 + self.rank)

        net_config = config.network_config()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            generator = Generator(net_config)
            discriminator = Discriminator(net_config)
            if config.d_spectral_norm:
                # its power iteration starts from random vectors: drawn here, from the run's
                # seed, not from whatever the process's global generator holds
                _spectral_norm(discriminator)
        if init is not None:
            _load_initial_weights(generator, init)
        elif config.w_anchor > 0:
            raise ValueError(
                "w_anchor > 0 holds the output to the initial model's: it needs init= (a model "
                "to fine-tune; cycsr train --init, the Train widget's 'start from')"
            )
        # w_anchor: a frozen copy of the initial generator, what the output is held to
        self._anchor: nn.Module | None = None
        if config.w_anchor > 0:
            self._anchor = copy.deepcopy(generator).eval().requires_grad_(False)
        # channels-last (NHWC) convolutions are faster on CPU (oneDNN) and on tensor cores
        layout = memory_format(self.device)
        self._g: nn.Module = generator.to(self.device, memory_format=layout)
        self._d: nn.Module = discriminator.to(self.device, memory_format=layout)
        if self._anchor is not None:
            self._anchor = self._anchor.to(self.device, memory_format=layout)

        if normalisation is None and init is not None:
            normalisation = dict(init.normalisation)
        # the fibre spacing the network learns at: a fine-tuning learns at the initial model's
        self.work_spacing = _work_spacing(fibre_spacing, init, config)
        given_images, given_bundles = lr_images, bundles
        #: resizing factor of every image's frames (1.0: trained on as given)
        self.spacing_zooms: list[float] = []
        #: the frames' own median fibre spacing when they were resampled, else None
        self.frames_fibre_spacing: float | None = None
        if self.work_spacing is not None:
            paired = target_images if config.target == "paired" else None
            data = resample_to_spacing(
                lr_images, bundles, self.work_spacing, values=values, poses=registration,
                paired=paired, scale=config.scale,
            )  # fmt: skip
            self.spacing_zooms = list(data.zooms)
            if any(z != 1.0 for z in data.zooms):
                # from here on: the resampled frames, fibres, values, registration, targets
                self.frames_fibre_spacing = float(
                    np.median([b.spacing for b in _broadcast_bundles(bundles, len(data.zooms))])
                )
                lr_images, bundles, values = data.images, data.bundles, data.values
                registration = data.poses if registration is not None else None
                target_images = data.paired if paired is not None else target_images
            del data
        try:
            self.sampler = LRPatchSampler(
                lr_images,
                bundles,
                patch=config.patch,
                scale=config.scale,
                values=values,
                normalisation=normalisation,
                fov_fraction=config.fov_fraction,
                rng=self._np_rng,
                poses=registration,
            )
        except ValueError as exc:
            if self.frames_fibre_spacing is None or "patch lies inside" not in str(exc):
                raise
            raise ValueError(
                f"{exc} (the frames were resampled to the initial model's fibre spacing: "
                f"{self.spacing_note()}; or set match_spacing=False to train on them as they "
                "are)"
            ) from None
        if config.w_multi > 0 and not self.sampler.has_video:
            raise ValueError(
                "w_multi > 0 (multi-frame cycle consistency) needs a video (a stack of frames) "
                "and its registration with at least two good frames: pass registration= "
                "(napari_cycsr.video.register) or use napari_cycsr.workflows.train_video"
            )
        self.normalisation = dict(self.sampler.normalisation)
        masks = [np.asarray(b.fov_mask) for b in self.sampler.bundles]
        self.target_sampler = TargetSampler(
            config.target,
            images=target_images,
            lr_images=lr_images if config.target == "downscaled" else None,
            masks=masks if config.target == "downscaled" else None,
            patch=config.patch * config.scale,
            scale=config.scale,
            augment=config.augment,
            normalisation=self.normalisation,
            rng=self._np_rng,
        )
        #: median fibre spacing of the frames the network learns on (px), what the model records
        self.fibre_spacing = float(np.median([b.spacing for b in self.sampler.bundles]))
        self.noise_levels = self._noise_levels(noise_levels)  # per image, normalised units
        # noise-aware l_vec: smooth part of the residuals over two fibre spacings, and the
        # noise of that part per unit of fibre noise (calibrated once on white noise)
        self._smooth_sigma = _SMOOTH_SPACINGS * self.fibre_spacing * config.scale
        self._smooth_ratio = self._calibrate_smooth_ratio() if config.vec_tolerance else 1.0
        self._init_name = None
        if init is not None:
            meta = init.metadata
            self._init_name = str(meta.get("pretrained_name") or meta.get("name") or "a model")
            self._warn_other_spacing(meta.get("fibre_spacing"))

        self._g_step_module: nn.Module = self._g
        self._d_step_module: nn.Module = self._d
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._g_step_module = DDP(self._g, device_ids=ids)
            self._d_step_module = DDP(self._d, device_ids=ids)

        adam = {"lr": config.learning_rate, "betas": tuple(config.betas), "eps": config.eps}
        self.optimizer_g = torch.optim.Adam(self._g.parameters(), **adam)
        self.optimizer_d = torch.optim.Adam(self._d.parameters(), **adam)
        # float16 gradients underflow without loss scaling (bfloat16 has float32's range)
        fp16 = self.autocast_dtype == torch.float16
        self._scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self._scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)

        first = _first_frame(given_images)  # validated by the sampler
        if preview_crop is None:
            bundle = _broadcast_bundles(given_bundles, self.sampler.n_images)[0]
            preview_crop = _default_preview_crop(bundle.fov_mask)
        y0, x0, h, w = (int(v) for v in preview_crop)
        if h < 1 or w < 1 or y0 < 0 or x0 < 0 or y0 + h > first.shape[0] or x0 + w > first.shape[1]:
            raise ValueError(
                f"preview_crop {tuple(preview_crop)} (y0, x0, h, w) must lie inside the first "
                f"image of shape {first.shape}"
            )
        #: (y0, x0, h, w) of the first frame of the first image, in its own pixels
        self.preview_crop = (y0, x0, h, w)
        low, high = self.normalisation["low"], self.normalisation["high"]
        crop = (first[y0 : y0 + h, x0 : x0 + w] - low) / (high - low)
        zoom = self.spacing_zooms[0] if self.spacing_zooms else 1.0
        # the preview crop is shown on the first frame's own grid: resampled like the frames
        # it learns on, and its output resampled back
        self._preview_shape = (h * config.scale, w * config.scale)
        if zoom != 1.0:
            crop = resample_frame(crop, zoomed_shape((h, w), zoom))
        self._preview_input = torch.from_numpy(np.ascontiguousarray(crop, np.float32))[None, None]

        self.checkpoint_path: Path | None = None
        chk = checkpoint if checkpoint is not None else config.checkpoint_dir
        if chk is not None:
            self.checkpoint_path = _checkpoint_file(chk)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self._stop_event = threading.Event()
        self._running = False
        self._durations: deque[float] = deque(maxlen=25)

    # ------------------------------------------------------------------ setup
    def spacing_note(self) -> str | None:
        """One sentence on how the frames were resampled to the learned spacing, or None.

        Examples
        --------
        >>> from skimage import data
        >>> from napari_cycsr.simulate import simulate_pcle
        >>> sim = simulate_pcle(data.camera()[:128, :128] / 255.0, spacing=4.0, seed=0)
        >>> config = TrainConfig(preset="tiny", iterations=1, patch=16, device="cpu")
        >>> trainer = Trainer(sim.lr, sim.bundle, config=config, fibre_spacing=2.0)
        >>> print(trainer.spacing_note())
        frames resampled x0.60 to a fibre spacing of 2.00 px (theirs: 3.35 px) to learn at it
        """
        if self.frames_fibre_spacing is None:
            return None
        zooms = sorted({round(z, 2) for z in self.spacing_zooms if z != 1.0})
        how = "x" + "/".join(f"{z:.2f}" for z in zooms)
        return (
            f"frames resampled {how} to a fibre spacing of {self.work_spacing:.2f} px (theirs: "
            f"{self.frames_fibre_spacing:.2f} px) to learn at it"
        )

    def _warn_other_spacing(self, trained: Any) -> None:
        """Warn when the initial model learned on fibres another distance apart and the
        frames were not resampled to its spacing (``match_spacing=False``, ``fibre_spacing``)."""
        trained = positive_spacing(trained)
        if trained is None or spacing_zoom(trained, self.fibre_spacing) == 1.0:
            return
        warnings.warn(
            f"the initial model learned on fibres {trained:.2f} px apart; these frames' "
            f"fibres are {self.fibre_spacing:.2f} px apart and are not resampled to its "
            "spacing (match_spacing is off, or another fibre_spacing was asked for), so the "
            "fine-tuning starts from filters at the wrong scale: on the real USAF video "
            "(4.93 px) fine-tuning the pretrained default so lost its whole gain over TLI "
            "(docs/pretrained.md, 'Fine-tuning on single frames'). Leave match_spacing on "
            "(the default) to learn at the model's spacing.",
            stacklevel=3,
        )

    def _noise_levels(self, given: Any = None) -> np.ndarray:
        """Noise level of each training image's fibre values, in normalised units."""
        span = self.normalisation["high"] - self.normalisation["low"]
        n = self.sampler.n_images
        given = _check_noise_levels(given, n)
        if self.config.noise_level is not None:
            return np.full(n, float(self.config.noise_level) / span)
        if not self.config.vec_tolerance:
            return np.zeros(n)
        from .consistency import estimate_noise

        levels = [  # the sampler's values are normalised already; the given ones are not
            estimate_noise(v, b, pooled=True) if level is None else level / span
            for v, b, level in zip(self.sampler.values, self.sampler.bundles, given)
        ]
        return np.nan_to_num(np.asarray(levels, dtype=np.float64), nan=0.0)

    def _calibrate_smooth_ratio(self) -> float:
        """Standard deviation of the smooth part of unit white noise on the training cells."""
        rng = np.random.default_rng(self.config.seed + 777)  # not the training stream
        saved, self.sampler.rng = self.sampler.rng, rng
        try:
            positions = self.sampler.draw_positions(4)
        finally:
            self.sampler.rng = saved
        batch = self.sampler.batch_at(positions)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        noise = torch.randn(batch.n_cells, generator=gen, dtype=torch.float64)
        smooth = smooth_cells(noise, batch.cell_index, batch.n_cells, self._smooth_sigma)
        return float(smooth.std())

    def _setup_device(self) -> torch.device:
        device = _resolve_device(self.config.device)
        if self.world_size > 1 and device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        return device

    def _setup_process_group(self) -> None:
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)

    # ------------------------------------------------------------------ public API
    @property
    def total(self) -> int:
        return self.config.iterations

    @property
    def precision(self) -> str:
        """The precision in effect: "fp32", "bf16" or "fp16" (``config.precision`` resolved)."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    def _autocast(self) -> Any:
        return autocast(self.device, self.autocast_dtype)

    def stop(self) -> None:
        """Ask :meth:`run` to end after the current iteration (thread-safe).

        A checkpoint is written (when a checkpoint path is set) and the last event has
        ``stopped=True``. Calling :meth:`run` again continues the run.
        """
        self._stop_event.set()

    @property
    def model(self) -> SRModel:
        """A copy of the current generator as an :class:`SRModel` (CPU, eval mode)."""
        generator = copy.deepcopy(self._g).to("cpu", memory_format=torch.contiguous_format)
        generator.eval()
        return SRModel(generator, normalisation=dict(self.normalisation), metadata=self._metadata())

    def save(self, path: str | os.PathLike[str]) -> Path | None:
        """Write the current model file (weights + metadata; :func:`~napari_cycsr.io.save_model`).

        Only rank 0 writes; other ranks return ``None``.
        """
        from .io import save_model

        if not self.is_main:
            return None
        return save_model(self.model, path)

    def run(self) -> Iterator[TrainEvent]:
        """Train until ``config.iterations``, yielding one :class:`TrainEvent` per iteration.

        Stop early with :meth:`stop` (from any thread) or by closing the generator; either
        way a checkpoint of the last completed iteration is written when a checkpoint path is
        set. Calling ``run()`` again continues from :attr:`iteration`.

        Yields
        ------
        TrainEvent
            On rank 0 only (other ranks of a distributed run yield nothing).
        """
        if self._running:
            raise RuntimeError("this Trainer is already running")
        self._running = True
        self._stop_event.clear()
        cfg = self.config
        last_checkpoint = self.iteration
        in_step = False
        self._g.train()
        self._d.train()
        with thread_scope(cfg.threads, self.device) as threads:
            try:
                while self.iteration < cfg.iterations:
                    started = time.perf_counter()
                    in_step = True
                    losses = self._step()
                    self.iteration += 1
                    in_step = False
                    self.history.append(losses)
                    self._durations.append(time.perf_counter() - started)
                    stopping = self._should_stop()
                    it = self.iteration
                    final = stopping or it >= cfg.iterations
                    due = final or bool(cfg.checkpoint_every and it % cfg.checkpoint_every == 0)
                    if due:
                        self._sync_buffers()
                    written = None
                    if due and self.checkpoint_path is not None:
                        written = self.save_checkpoint(self.checkpoint_path)
                        last_checkpoint = it
                    preview = None
                    if cfg.preview_every and (it % cfg.preview_every == 0 or final):
                        preview = self.preview()
                    spi = float(np.median(self._durations))
                    if self.is_main:
                        yield TrainEvent(
                            iteration=it,
                            total=cfg.iterations,
                            losses={k: v for k, v in losses.items() if k != "d_accuracy"},
                            d_accuracy=losses["d_accuracy"],
                            seconds_per_iteration=spi,
                            eta_seconds=spi * (cfg.iterations - it),
                            preview=preview,
                            checkpoint=None if written is None else str(written),
                            stopped=stopping,
                        )
                    if stopping:
                        break
                    threads.update()  # fewer threads when other jobs take the cores
            finally:
                self._running = False
                # closed / interrupted between iterations: keep the last completed one (a failure
                # in the middle of an iteration leaves the previous checkpoint, never a half step)
                if (
                    not in_step
                    and self.checkpoint_path is not None
                    and self.iteration > last_checkpoint
                ):
                    try:
                        self.save_checkpoint(self.checkpoint_path)
                    except Exception as err:  # do not mask the exception that ended the run
                        warnings.warn(
                            f"could not write the checkpoint {self.checkpoint_path}: {err}",
                            RuntimeWarning,
                            stacklevel=2,
                        )

    def preview(self) -> np.ndarray:
        """SR of the fixed preview crop, in input intensity units (float32)."""
        was_training = self._g.training
        self._g.eval()
        try:
            with torch.no_grad(), self._autocast():
                out = self._g(self._preview_input.to(self.device))
        finally:
            self._g.train(was_training)
        low, high = self.normalisation["low"], self.normalisation["high"]
        sr = out[0, 0].float().cpu().numpy()
        if sr.shape != self._preview_shape:
            sr = resample_frame(sr, self._preview_shape)
        return (sr * (high - low) + low).astype(np.float32)

    # ------------------------------------------------------------------ one iteration
    def _should_stop(self) -> bool:
        stop = self._stop_event.is_set()
        if self.world_size > 1:
            import torch.distributed as dist

            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item() > 0)
        return stop

    def _sync_buffers(self) -> None:
        """Average BatchNorm running statistics over ranks (each rank saw its own patches)."""
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        for module in (self._g, self._d):
            for buffer in module.buffers():
                if buffer.is_floating_point():
                    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                    buffer.div_(self.world_size)

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        """What the discriminator sees: (the fine detail of) ``x`` plus instance noise."""
        if self.config.adv_highpass:
            sigma = self.config.adv_highpass * self.fibre_spacing * self.config.scale
            x = highpass(x, sigma)
        return add_instance_noise(x, self.config.noise_sigma, self._torch_rng)

    def _d_update(self, sr: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
        d = self._d_step_module
        # the high-pass and the instance noise in float32, the discriminator under autocast
        real_in, fake_in = self._noisy(real), self._noisy(sr.detach())
        with self._autocast():
            real_logits = d(real_in)
            fake_logits = d(fake_in)
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        loss = discriminator_loss(real_logits, fake_logits, kind=self.config.adv_loss)
        self.optimizer_d.zero_grad(set_to_none=True)
        self._scaler_d.scale(loss).backward()
        self._scaler_d.step(self.optimizer_d)
        self._scaler_d.update()
        with torch.no_grad():
            accuracy = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
        return float(loss.detach()), float(accuracy)

    def _target_batch(self, batch: Any) -> torch.Tensor:
        positions = batch.positions if self.config.target == "paired" else None
        target = self.target_sampler.sample(batch.batch_size, positions).to(self.device)
        transforms = getattr(batch, "transforms", None)
        if transforms is not None and self.config.target == "paired":
            target = torch.stack([dihedral(t, k, f) for t, (k, f) in zip(target, transforms)])
        return target

    def _augment(self, batch: Any) -> Any:
        """A random flip / quarter turn of every LR patch with its cell map (same cells)."""
        draws = self._np_rng.integers(0, 8, size=batch.batch_size)
        transforms = [(int(d) % 4, bool(d >= 4)) for d in draws]
        lr = torch.stack([dihedral(x, k, f) for x, (k, f) in zip(batch.lr, transforms)])
        cells = torch.stack([dihedral(c, k, f) for c, (k, f) in zip(batch.cell_index, transforms)])
        out = dataclasses.replace(batch, lr=lr.contiguous(), cell_index=cells.contiguous())
        out.transforms = transforms  # the paired target follows the same transform
        return out

    def learning_rate(self, iteration: int | None = None) -> float:
        """The learning rate of both networks at ``iteration`` (default: the next step's).

        Constant unless ``config.lr_decay`` > 0: then a half cosine from
        ``config.learning_rate`` (first iteration) to ``learning_rate * (1 - lr_decay)``
        (last).
        """
        cfg = self.config
        it = self.iteration if iteration is None else int(iteration)
        if cfg.lr_decay <= 0 or cfg.iterations <= 1:
            return float(cfg.learning_rate)
        progress = min(max(it / (cfg.iterations - 1), 0.0), 1.0)
        return float(
            cfg.learning_rate * (1.0 - cfg.lr_decay * (1.0 - math.cos(math.pi * progress)) / 2.0)
        )

    def _step(self) -> dict[str, float]:
        cfg = self.config
        if cfg.lr_decay > 0:
            rate = self.learning_rate()
            for optimizer in (self.optimizer_g, self.optimizer_d):
                for group in optimizer.param_groups:
                    group["lr"] = rate
        bsz = cfg.effective_batch_size
        adversarial = self.iteration >= cfg.warmup
        loss_d, accuracy = float("nan"), float("nan")
        if adversarial:
            for _ in range(cfg.d_steps - 1):
                extra = self.sampler.sample(bsz).to(self.device)
                with torch.no_grad(), self._autocast():
                    extra_sr = self._g(extra.lr).float()
                self._d_update(extra_sr, self._target_batch(extra))
        batch = self.sampler.sample(bsz).to(self.device)
        if cfg.augment_lr:
            batch = self._augment(batch)
        with self._autocast():
            sr = self._g_step_module(batch.lr)
        sr = sr.float()  # losses, cell means and the consistency layer in float32
        if cfg.consistency_steps:
            sr = consistency_layer(
                sr,
                batch.cell_index,
                batch.values,
                batch.n_cells,
                sigma=_CONSISTENCY_SIGMA * self.fibre_spacing * cfg.scale,
                steps=cfg.consistency_steps,
            )
        real = None
        if adversarial or cfg.w_pix > 0:
            real = self._target_batch(batch)
        if adversarial:
            loss_d, accuracy = self._d_update(sr, real)

        vec = self._vec_loss(sr, batch, batch.positions)
        multi = None
        if cfg.w_multi > 0:
            multi = self._multi_frame_loss(sr, batch)
        reg = l_reg(sr, batch.lr)
        loss_g = cfg.w_vec * vec + cfg.w_reg * reg
        if cfg.w_res:
            base = batch.lr
            if cfg.scale > 1:
                base = torch.nn.functional.interpolate(
                    base, scale_factor=cfg.scale, mode="bilinear", align_corners=False
                )
            loss_g = loss_g + cfg.w_res * (sr - base).square().mean()
        anchor = None
        if self._anchor is not None:
            with torch.no_grad(), self._autocast():
                initial = self._anchor(batch.lr)
            anchor = (sr - initial.float()).square().mean()
            loss_g = loss_g + cfg.w_anchor * anchor
        adv = torch.zeros((), device=self.device)
        if adversarial:
            for p in self._d.parameters():
                p.requires_grad_(False)
            try:
                real_logits = None
                if cfg.adv_loss == "relativistic":
                    real_in = self._noisy(real)
                    with torch.no_grad(), self._autocast():
                        real_logits = self._d(real_in).float()
                fake_in = self._noisy(sr)
                with self._autocast():
                    fake_logits = self._d(fake_in)
                adv = l_adv(fake_logits.float(), real_logits, kind=cfg.adv_loss)
            finally:
                for p in self._d.parameters():
                    p.requires_grad_(True)
            loss_g = loss_g + cfg.w_adv * adv
        losses = {}
        if anchor is not None:
            losses["l_anchor"] = float(anchor.detach())
        if multi is not None:
            loss_g = loss_g + cfg.w_multi * multi
            losses["l_multi"] = float(multi.detach())
        if cfg.w_pix > 0:
            pix = l_pix(sr, real)
            loss_g = loss_g + cfg.w_pix * pix
            losses["l_pix"] = float(pix.detach())
        if not torch.isfinite(loss_g):
            raise FloatingPointError(
                f"the generator loss became {float(loss_g)} at iteration {self.iteration + 1}; "
                "lower the learning rate or check the input images"
            )
        self.optimizer_g.zero_grad(set_to_none=True)
        self._scaler_g.scale(loss_g).backward()
        self._scaler_g.step(self.optimizer_g)
        self._scaler_g.update()
        losses.update(
            l_vec=float(vec.detach()),
            l_adv=float(adv.detach()),
            l_reg=float(reg.detach()),
            loss_g=float(loss_g.detach()),
            loss_d=loss_d,
            d_accuracy=accuracy,
        )
        return losses

    def _vec_loss(self, sr: torch.Tensor, cells: Any, positions: np.ndarray) -> torch.Tensor:
        """l_vec of ``sr`` against the values of ``cells`` (a PatchBatch or NeighbourBatch)."""
        cfg = self.config
        v_hat = voronoi_means(sr, cells.cell_index, cells.n_cells)
        if cfg.vec_tolerance and not (cfg.normalise_vec or cfg.paper_padding):
            image_of_cell = positions[cells.segment_patch.cpu().numpy(), 0]
            tol = cfg.vec_tolerance * self.noise_levels[image_of_cell]
            return l_vec_noise_aware(
                v_hat,
                cells.values,
                cells.cell_index,
                cells.n_cells,
                tolerance=torch.from_numpy(tol.astype(np.float32)).to(self.device),
                sigma=self._smooth_sigma,
                smooth_ratio=self._smooth_ratio,
            )
        return l_vec(
            v_hat,
            cells.values,
            normalise=cfg.normalise_vec,
            segment_patch=cells.segment_patch,
            n_patches=sr.shape[0],
            padding=PAPER_FIBRES_PER_PATCH if cfg.paper_padding else None,
        )

    def _multi_frame_loss(self, sr: torch.Tensor, batch: Any) -> torch.Tensor:
        """Multi-frame cycle consistency: ``sr`` moved into a neighbouring frame must give
        back that frame's fibre values (:meth:`LRPatchSampler.neighbours`)."""
        neighbours = self.sampler.neighbours(batch.positions, self.config.multi_frames)
        neighbours = neighbours.to(self.device)
        transforms = getattr(batch, "transforms", None)
        if transforms is not None:  # back to the frame's own orientation
            sr = torch.stack([undo_dihedral(x, k, f) for x, (k, f) in zip(sr, transforms)])
        moved = torch.nn.functional.grid_sample(
            sr, neighbours.grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        if neighbours.n_cells == 0:
            return moved.sum() * 0.0
        return self._vec_loss(moved, neighbours, batch.positions)

    # ------------------------------------------------------------------ checkpoints
    def _metadata(self) -> dict[str, Any]:
        # how this machine ran (precision, threads) is not part of the model: a model file
        # is the same whatever the precision it was trained in (its weights are float32)
        train_config = {k: v for k, v in self.config.to_dict().items() if k not in _RUN_ONLY_FIELDS}
        return {
            "train_config": train_config,
            "seed": self.config.seed,
            "iteration": self.iteration,
            "loss_history": _thin_history(self.history, _MAX_HISTORY_POINTS),
            "fibre_spacing": self.fibre_spacing,
            **(
                {"resampled_from_spacing": self.frames_fibre_spacing}
                if self.frames_fibre_spacing is not None
                else {}
            ),
            "initialised_from": self._init_name,
            "noise_levels": [
                float(x) * (self.normalisation["high"] - self.normalisation["low"])
                for x in self.noise_levels
            ],
            "normalisation": dict(self.normalisation),
            "world_size": self.world_size,
        }

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from .io import flatten_state_dict, model_to_tensors

        model_tensors, model_meta = model_to_tensors(self.model)
        tensors: dict[str, torch.Tensor] = dict(model_tensors)
        d_tensors, d_skeleton = flatten_state_dict("discriminator.", self._d.state_dict())
        og_tensors, og_skeleton = flatten_state_dict("optimizer_g.", self.optimizer_g.state_dict())
        od_tensors, od_skeleton = flatten_state_dict("optimizer_d.", self.optimizer_d.state_dict())
        tensors.update(d_tensors)
        tensors.update(og_tensors)
        tensors.update(od_tensors)
        if self._anchor is not None:
            for key, value in self._anchor.state_dict().items():
                tensors[_ANCHOR_PREFIX + key] = value.detach().to("cpu").contiguous()
        tensors["rng.torch"] = self._torch_rng.get_state()
        keys = [k for k in _LOSS_KEYS if self.history and k in self.history[0]]
        tensors["history"] = torch.tensor(
            [[h.get(k, float("nan")) for k in keys] for h in self.history], dtype=torch.float64
        ).reshape(len(self.history), len(keys))
        meta = {
            "kind": _CHECKPOINT_KIND,
            "model": model_meta,
            "config": self.config.to_dict(),
            "iteration": self.iteration,
            "normalisation": dict(self.normalisation),
            "preview_crop": list(self.preview_crop),
            "work_spacing": self.work_spacing,
            "history_keys": keys,
            "discriminator": d_skeleton,
            "optimizer_g": og_skeleton,
            "optimizer_d": od_skeleton,
            "grad_scalers": [self._scaler_g.state_dict(), self._scaler_d.state_dict()],
            "rng_numpy": json.loads(json.dumps(self._np_rng.bit_generator.state)),
            "initialised_from": self._init_name,
            "world_size": self.world_size,
        }
        return tensors, meta

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path | None:
        """Write the full training state (weights, both Adam states, RNG states, history).

        The file is also a model file: :func:`~napari_cycsr.io.load_model` opens it.
        Only rank 0 writes; other ranks return ``None``.
        """
        from .io import save_checkpoint

        if not self.is_main:
            return None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors, meta = self._state()
        return save_checkpoint(path, tensors, meta)

    def _load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        from .io import unflatten_state_dict

        prefix = meta["model"].get("prefix", "generator.")
        g_state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        self._g.load_state_dict(g_state, strict=True)
        self._d.load_state_dict(unflatten_state_dict(tensors, meta["discriminator"]), strict=True)
        self.optimizer_g.load_state_dict(unflatten_state_dict(tensors, meta["optimizer_g"]))
        self.optimizer_d.load_state_dict(unflatten_state_dict(tensors, meta["optimizer_d"]))
        scalers = meta.get("grad_scalers") or []
        for scaler, state in zip((self._scaler_g, self._scaler_d), scalers):
            if scaler.is_enabled() and state:
                scaler.load_state_dict(state)
        self._torch_rng.set_state(tensors["rng.torch"].clone())
        self._np_rng.bit_generator.state = meta["rng_numpy"]
        self.iteration = int(meta["iteration"])
        self._init_name = meta.get("initialised_from")
        keys = meta.get("history_keys", [])
        rows = tensors.get("history", torch.zeros(0, len(keys))).tolist()
        self.history = [
            {k: v for k, v in zip(keys, row) if not (k in _OPTIONAL_LOSSES and math.isnan(v))}
            for row in rows
        ]

    @classmethod
    def resume(
        cls,
        checkpoint: str | os.PathLike[str],
        lr_images: Any,
        bundles: Any,
        target: str | None = None,
        *,
        values: Any = None,
        target_images: Any = None,
        iterations: int | None = None,
        device: str | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        registration: Any = None,
        noise_levels: Any = None,
        **overrides: Any,
    ) -> Trainer:
        """Continue a run from a checkpoint written by :meth:`save_checkpoint`.

        With the same data, the resumed run is bit-identical to an uninterrupted one on the
        same device, in the same precision and with the same number of CPU threads (set
        ``threads`` for that: the automatic count follows the machine's load, and a
        convolution's rounding can depend on how its work was split); weights, optimiser
        moments, RNG streams and iteration are restored.

        Parameters
        ----------
        checkpoint : str or path
            Checkpoint file (or the folder holding ``checkpoint.safetensors``).
        lr_images, bundles, target, values, target_images, registration, noise_levels
            As for :class:`Trainer` (give the same data for an exact continuation).
        iterations : int, optional
            New total number of iterations (e.g. to train longer).
        device : str, optional
            Device to continue on (default: the checkpoint's config).
        checkpoint_dir : str or path, optional
            Where later checkpoints go (default: the file resumed from).
        **overrides
            Other :class:`TrainConfig` fields to change (e.g. ``checkpoint_every``).

        Returns
        -------
        Trainer
        """
        from .io import load_checkpoint

        path = _checkpoint_file(checkpoint)
        tensors, meta = load_checkpoint(path)
        if meta.get("kind") != _CHECKPOINT_KIND:
            raise ValueError(f"{path} is not a napari-cycsr training checkpoint")
        _check_resume_meta(meta, tensors, path)
        config_dict = dict(meta["config"])
        if iterations is not None:
            overrides["iterations"] = iterations
        if device is not None:
            overrides["device"] = device
        if checkpoint_dir is not None:
            overrides["checkpoint_dir"] = os.fspath(checkpoint_dir)
        fixed = {"preset", "scale", "residual"} & set(overrides)
        changed = [k for k in fixed if overrides[k] != config_dict.get(k)]
        if changed:
            raise ValueError(f"cannot change the network ({sorted(changed)}) when resuming")
        config = TrainConfig.from_dict({**config_dict, **overrides})
        init = _anchor_model(config, tensors, meta, path)
        trainer = cls(
            lr_images,
            bundles,
            target,
            config,
            values=values,
            target_images=target_images,
            checkpoint=checkpoint_dir if checkpoint_dir is not None else path,
            preview_crop=tuple(meta["preview_crop"]),
            normalisation=meta["normalisation"],
            init=init,
            registration=registration,
            # the spacing the run learned at (checkpoints from before it was recorded: the
            # frames' own, as they were trained)
            fibre_spacing=meta.get("work_spacing"),
            noise_levels=noise_levels,
        )
        trainer._load_state(tensors, meta)
        return trainer


def _anchor_model(
    config: TrainConfig, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path
) -> SRModel | None:
    """The frozen initial model a ``w_anchor`` run holds its output to, from its checkpoint."""
    if config.w_anchor <= 0:
        return None
    state = {
        k[len(_ANCHOR_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_ANCHOR_PREFIX)
    }
    if not state:
        raise ValueError(
            f"{path}: w_anchor > 0 needs the initial model's weights, and this checkpoint has "
            "none (it was not a fine-tuning with w_anchor); resume with w_anchor=0, or start a "
            "new fine-tuning with init="
        )
    generator = Generator(config.network_config())
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{path}: damaged training checkpoint: its anchor weights: {exc}"
        ) from None
    return SRModel(generator, normalisation=dict(meta["normalisation"]))


def _check_resume_meta(meta: dict[str, Any], tensors: dict[str, Any], path: Path) -> None:
    """Refuse a training checkpoint whose state is incomplete or damaged, naming the file."""
    for key in ("model", "config", "normalisation", "rng_numpy"):
        if not isinstance(meta.get(key), dict):
            raise ValueError(
                f"{path}: damaged training checkpoint: its {key!r} entry is missing or not "
                "an object; resume from another checkpoint or train anew"
            )
    for key in ("discriminator", "optimizer_g", "optimizer_d"):
        if key not in meta:
            raise ValueError(
                f"{path}: damaged training checkpoint: it has no {key!r} state (a model file "
                "or a checkpoint written without it cannot resume training); resume from "
                "another checkpoint, or train anew starting from scratch"
            )
    iteration = meta.get("iteration")
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise ValueError(
            f"{path}: damaged training checkpoint: iteration must be a whole number >= 0, "
            f"got {iteration!r}"
        )
    crop = meta.get("preview_crop")
    if (
        not isinstance(crop, list)
        or len(crop) != 4
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in crop)
    ):
        raise ValueError(
            f"{path}: damaged training checkpoint: preview_crop must be 4 whole numbers "
            f"(y, x, height, width), got {crop!r}"
        )
    spacing = meta.get("work_spacing")
    if spacing is not None and positive_spacing(spacing) is None:
        raise ValueError(
            f"{path}: damaged training checkpoint: work_spacing must be a positive number of "
            f"pixels or null, got {spacing!r}"
        )
    if "rng.torch" not in tensors:
        raise ValueError(f"{path}: damaged training checkpoint: no 'rng.torch' state")


def train(
    lr_images: Any,
    bundles: Any,
    target: str | None = None,
    config: TrainConfig | None = None,
    *,
    values: Any = None,
    target_images: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool | Callable[[TrainEvent], Any] | None = True,
    init: SRModel | None = None,
    registration: Any = None,
    fibre_spacing: float | str | None = "auto",
    noise_levels: Any = None,
    **overrides: Any,
) -> SRModel:
    """Train a model and return it (convenience wrapper around :class:`Trainer`).

    Parameters
    ----------
    lr_images, bundles, target, config, values, target_images, checkpoint
        As for :class:`Trainer`.
    progress : bool or callable, optional
        True (default): show a progress bar with the losses and the time left (napari's
        activity bar inside a napari session, else ``tqdm`` on stderr). A callable is called
        with every :class:`TrainEvent` instead. False or None: silent.
    init : SRModel, optional
        Initial generator weights (fine-tuning); see :class:`Trainer`. Without ``config``,
        the run also takes the model's network (preset, scale, residual) and the loss
        settings it was trained with, as ``cycsr train --init`` does
        (:func:`napari_cycsr.config.fine_tune_settings`: e.g. the video-trained default is
        held to its own output on single frames, ``w_anchor`` 10); ``**overrides`` win. With
        ``config`` given, that config is used as it is.
    registration : Registration, array or list, optional
        Frame motion for the multi-frame cycle consistency (``w_multi > 0``); see
        :class:`Trainer`.
    fibre_spacing : float, "auto" or None, optional
        The fibre spacing the network learns at; "auto" (default): a fine-tuning learns at
        the initial model's (its frames are resampled to it, as inference resamples them).
        See :class:`Trainer`.
    noise_levels : sequence of float or None, optional
        Noise sd of each image's fibre values (values' units) for the noise-aware ``l_vec``;
        default: estimated from each image's values. See :class:`Trainer`.
    **overrides
        :class:`TrainConfig` fields, e.g. ``iterations=500, preset="tiny"``.

    Returns
    -------
    SRModel
        The trained model (CPU, eval mode).

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle
    >>> sim = simulate_pcle(data.camera()[:128, 192:320], seed=0)
    >>> model = train(sim.lr, sim.bundle, preset="tiny", iterations=2, batch_size=2,
    ...               patch=32, device="cpu")
    >>> model.metadata["iteration"]
    2
    """
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress must be True, False or a callable, got {progress!r}")
    if init is not None and config is None and isinstance(init, SRModel):
        # fine-tuning, as `cycsr train --init` and the Train widget: the model's network and
        # objective (config.fine_tune_settings), unless given here
        from .config import fine_tune_settings

        given = {**overrides, **({"target": target} if target is not None else {})}
        network, carried = fine_tune_settings(
            init.generator.config, init.metadata.get("train_config"), given
        )
        overrides = {**network, **carried, **overrides}
    config = config if config is not None else TrainConfig()
    if target is not None:  # with the other overrides: they are validated together
        overrides["target"] = target
    if overrides:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"train() got unknown TrainConfig field(s) {unknown}")
        config = dataclasses.replace(config, **overrides)
    trainer = Trainer(
        lr_images,
        bundles,
        target,
        config,
        values=values,
        target_images=target_images,
        checkpoint=checkpoint,
        init=init,
        registration=registration,
        fibre_spacing=fibre_spacing,
        noise_levels=noise_levels,
    )
    bar = None
    if progress is True:
        from ._progress import progress_bar

        bar = progress_bar(config.iterations, "train", disable=not trainer.is_main)
    try:
        for event in trainer.run():
            if bar is not None:
                bar.update(event.iteration - bar.n)
                bar.set_postfix(
                    {k: f"{event.losses[k]:.3g}" for k in ("l_vec", "l_adv") if k in event.losses},
                    refresh=False,
                )
            elif callable(progress):
                progress(event)
    finally:
        if bar is not None:
            bar.close()
    return trainer.model
