"""Settings without torch: network sizes, presets and target domains.

Everything here imports only the standard library, so the command line's help, the widgets'
menus and scripts can list the choices (and their defaults) without loading torch. The
modules that use them (``models``, ``data``, ``training``) re-export them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from ._device import check_precision, check_threads
from ._validate import check_setting_ranges

#: Sizes of the geometric self-ensemble at inference (``super_resolve(ensemble=)``): the
#: network on 1, 2, 4 or 8 quarter turns / mirror images of each frame, averaged.
ENSEMBLE_SIZES = (1, 2, 4, 8)

#: The self-ensemble size used unless told otherwise (docs/pretrained.md, "Self-ensemble").
DEFAULT_ENSEMBLE = 4

__all__ = [
    "ADV_LOSSES",
    "CHECKPOINT_NAME",
    "PRESETS",
    "RENAMED_FIELDS",
    "TARGET_KINDS",
    "SPACING_MATCH",
    "TRAIN_GROUPS",
    "DATA_LOSS_SETTINGS",
    "recipe_losses",
    "fine_tune_settings",
    "NetworkConfig",
    "TrainConfig",
    "get_preset",
]

#: A model runs on resampled frames (inference) and learns on resampled frames (fine-tuning)
#: when the frames' fibre spacing differs from the model's by more than this fraction.
SPACING_MATCH = 0.05

#: Target domains understood by :class:`napari_cycsr.data.TargetSampler`: "natural" (the
#: bundled natural pictures), "images" (your own high-resolution images), "downscaled"
#: (downscaled pCLE frames) and "paired" (the ground truth of simulated data; for ablations).
TARGET_KINDS: tuple[str, ...] = ("natural", "images", "downscaled", "paired")

#: Adversarial losses (:func:`napari_cycsr.losses.discriminator_loss`): "bce" (the paper's
#: Eqs. 1 and 5), "hinge", "relativistic".
ADV_LOSSES: tuple[str, ...] = ("bce", "hinge", "relativistic")

#: The fields of :class:`TrainConfig` by group.
TRAIN_GROUPS: dict[str, tuple[str, ...]] = {
    "network": ("preset", "scale", "residual"),
    "optimiser": (
        "iterations", "batch_size", "patch", "learning_rate", "lr_decay", "betas", "eps",
        "d_steps", "warmup",
    ),
    "losses": (
        "w_vec", "w_adv", "w_reg", "w_res", "w_anchor", "w_pix", "normalise_vec",
        "paper_padding", "vec_tolerance", "noise_level", "adv_loss", "adv_highpass",
        "d_spectral_norm", "noise_sigma", "consistency_steps", "w_multi", "multi_frames",
    ),
    "data": ("target", "augment", "augment_lr", "fov_fraction", "match_spacing", "seed"),
    "run": (
        "device", "precision", "threads", "checkpoint_every", "preview_every", "checkpoint_dir",
    ),
}  # fmt: skip

#: Loss settings that describe a run's data rather than its objective: fine-tuning does not
#: carry them over from the initial model (:func:`recipe_losses`).
DATA_LOSS_SETTINGS: tuple[str, ...] = ("noise_level", "w_pix", "w_multi", "multi_frames")


#: ``w_anchor`` of a fine-tuning without paired targets from a model trained against paired
#: targets (e.g. the video-trained default): the output is held to the initial model's.
#: 10 since 2026-12-01 (1 before): chosen on the validation crops, where 1 let smooth noisy
#: frames fall below TLI (docs/pretrained.md, "Fine-tuning on single frames").
UNPAIRED_FINE_TUNE_W_ANCHOR = 10.0


def recipe_losses(train_config: Any, *, paired: bool = False) -> dict[str, Any]:
    """The objective a model was trained with, to fine-tune it with the same one.

    A model trained against paired targets (``target="paired"`` with a pixel loss, e.g. the
    fused frames of a video) was held in place by them; they belong to its data and stay
    behind, and a fine-tuning without paired targets (``paired=False``) holds the output to
    the initial model's in their place (``w_anchor`` at least
    :data:`UNPAIRED_FINE_TUNE_W_ANCHOR`). Measured on the validation crops
    (docs/pretrained.md, "Fine-tuning on single frames"): with the video-trained default's
    own objective alone, 300 single-frame iterations fell as far as 5.3 dB below TLI; held
    to TLI (``w_res`` 1) they gave back most of the model's gain; held to the initial model
    they kept it on textures and sparse structures, and with ``w_anchor`` 10 (not 1) also on
    smooth noisy frames.

    Parameters
    ----------
    train_config : dict or None
        A model's ``metadata["train_config"]`` (flat :class:`TrainConfig` fields).
    paired : bool, optional
        Whether the fine-tuning has paired targets of its own (e.g. ``cycsr train --video``).

    Returns
    -------
    dict
        Its "losses" group (:data:`TRAIN_GROUPS`) and ``augment_lr``, without the settings
        that belong to its data (:data:`DATA_LOSS_SETTINGS`); empty for ``None``. Every
        setting returned needs the fine-tuning to start from the model (``init=``).

    Examples
    --------
    >>> recipe_losses({"vec_tolerance": 1.5, "w_res": 1.0, "augment_lr": True,
    ...                "noise_level": 0.02, "iterations": 1000})
    {'w_res': 1.0, 'vec_tolerance': 1.5, 'augment_lr': True}
    >>> video = {"target": "paired", "w_pix": 1.0, "w_res": 0.0, "vec_tolerance": 1.5}
    >>> recipe_losses(video)
    {'w_res': 0.0, 'vec_tolerance': 1.5, 'w_anchor': 10.0}
    >>> recipe_losses(video, paired=True)
    {'w_res': 0.0, 'vec_tolerance': 1.5}
    """
    recipe = dict(train_config or {})
    keep = [k for k in (*TRAIN_GROUPS["losses"], "augment_lr") if k not in DATA_LOSS_SETTINGS]
    out = {key: recipe[key] for key in keep if key in recipe}
    trained_paired = recipe.get("target") == "paired" and float(recipe.get("w_pix") or 0) > 0
    if trained_paired and not paired:
        out["w_anchor"] = max(float(out.get("w_anchor") or 0.0), UNPAIRED_FINE_TUNE_W_ANCHOR)
    return out


def fine_tune_settings(
    network: Any, train_config: Any, given: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The TrainConfig fields that fine-tune a model: its network and its objective.

    One rule for every front end (``cycsr train --init``, the Train widget's "start from"):
    the network (preset, scale, residual) is the model's, and its loss settings
    (:func:`recipe_losses`) come along unless the user set them explicitly.

    Parameters
    ----------
    network : NetworkConfig or dict
        The model's generator network (``model.generator.config``, or the ``network`` of a
        model file's header).
    train_config : dict or None
        The model's ``metadata["train_config"]``.
    given : mapping, optional
        The TrainConfig fields the user set explicitly (command-line options and ``--set``,
        the fields changed in the widget's form): they win over the carried loss settings.
        A ``preset``, ``scale`` or ``residual`` among them must be the model's own. A
        ``target`` of "paired" or a ``w_pix`` > 0 among them makes it a paired fine-tuning
        (:func:`recipe_losses`).

    Returns
    -------
    network_fields : dict
        ``preset``, ``scale`` and ``residual`` that rebuild the model's network.
    carried : dict
        The model's loss settings that are not in ``given``.

    Raises
    ------
    ValueError
        The network is no preset's, or not the given preset, scale or residual.

    Examples
    --------
    >>> fine_tune_settings(PRESETS["tiny"], {"w_res": 1.0, "w_adv": 0.0}, {"w_adv": 1e-3})
    ({'preset': 'tiny', 'scale': 1, 'residual': True}, {'w_res': 1.0})
    """
    if isinstance(network, NetworkConfig):
        network = network.to_dict()
    network = NetworkConfig.from_dict(dict(network))
    given = dict(given or {})
    preset = given.get("preset")
    fields = None
    for name in [preset] if preset else list(PRESETS):
        candidate = get_preset(name, scale=network.scale, residual=network.residual)
        if candidate == network:
            fields = {"preset": name, "scale": network.scale, "residual": network.residual}
            break
    if fields is None:
        size = f"{network.channels} channels, {network.blocks} blocks"
        raise ValueError(
            f"the model's network ({size}) "
            + (f"is not the {preset!r} preset" if preset else "matches no preset")
        )
    for key in ("scale", "residual"):
        if given.get(key) is not None and given[key] != fields[key]:
            raise ValueError(
                f"the model's network has {key} {fields[key]!r}, not {given[key]!r}: "
                f"fine-tuning keeps the model's {key}"
            )
    paired = given.get("target") == "paired" or float(given.get("w_pix") or 0) > 0
    carried = {
        k: v for k, v in recipe_losses(train_config, paired=paired).items() if k not in given
    }
    return fields, carried


#: File name of the training checkpoint inside a checkpoint folder (every front end).
CHECKPOINT_NAME = "checkpoint.safetensors"

#: Old names of TrainConfig fields still read from older model files and checkpoints.
RENAMED_FIELDS: dict[str, str] = {"lr": "learning_rate"}


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the generator and discriminator.

    Parameters
    ----------
    channels : int
        Feature channels of the generator's residual trunk (SRGAN: 64).
    blocks : int
        Number of residual blocks (SRGAN: 16).
    scale : int
        Output grid relative to the input grid: 1 (paper), 2 or 4 (pixel-shuffle head).
    residual : bool
        Predict a correction added to the input (True) or the image itself (False, paper).
    disc_channels : int
        Channels of the discriminator's first layer (SRGAN: 64); doubled at each stage.
    disc_dense : int
        Width of the discriminator's dense layer (SRGAN: 1024).
    """

    channels: int = 64
    blocks: int = 16
    scale: int = 1
    residual: bool = True
    disc_channels: int = 64
    disc_dense: int = 1024

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or self.scale not in (1, 2, 4):
            raise ValueError(f"scale must be 1, 2 or 4, got {self.scale!r}")
        for name in ("channels", "blocks", "disc_channels", "disc_dense"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown network config keys: {sorted(unknown)}")
        return cls(**data)


#: Named network sizes. "paper" is SRGAN's size used by Ravì et al.; "default" is the
#: CPU-friendly size chosen by benchmark (see docs/performance.md); "tiny" is for tests.
PRESETS: dict[str, NetworkConfig] = {
    "paper": NetworkConfig(channels=64, blocks=16, disc_channels=64, disc_dense=1024),
    "default": NetworkConfig(channels=32, blocks=6, disc_channels=32, disc_dense=256),
    "tiny": NetworkConfig(channels=8, blocks=2, disc_channels=8, disc_dense=32),
}


def get_preset(name: str, **overrides: Any) -> NetworkConfig:
    """Return the named :class:`NetworkConfig`, with fields optionally overridden."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
    return dataclasses.replace(base, **overrides) if overrides else base


@dataclass(frozen=True)
class TrainConfig:
    """Every hyper-parameter of a training run (frozen: make a changed copy with
    ``dataclasses.replace(config, iterations=500)``, which validates again).

    The fields form five groups (:data:`TRAIN_GROUPS`, :meth:`grouped`): the **network**
    (preset, scale, residual), the **optimiser** (iterations, batch_size, patch,
    learning_rate, lr_decay, betas, eps, d_steps, warmup), the **losses** (w_* weights,
    normalise_vec, paper_padding, vec_tolerance, noise_level, adv_loss, adv_highpass,
    d_spectral_norm, noise_sigma, consistency_steps, w_multi, multi_frames), the **data**
    (target, augment, augment_lr, fov_fraction, match_spacing, seed) and the **run**
    (device, checkpoint_every, preview_every, checkpoint_dir), which says how this machine
    runs it and not what is learnt. They stay flat keyword arguments
    (``TrainConfig(preset="tiny", learning_rate=3e-4)``), as the command line's
    ``--set KEY=VALUE`` and the model files' metadata have them.

    Parameters
    ----------
    preset : str
        Network size (:data:`PRESETS`): "paper", "default" or "tiny".
    scale : int
        Output grid of the generator relative to its input: 1 (paper), 2 or 4.
    residual : bool
        Generator predicts a correction added to its input (True) or the image (paper).
    iterations : int
        Total number of iterations (one D step and one G step each).
    batch_size : int or None
        Patches per batch; ``None`` = 54 for the "paper" preset (as the paper), 16 otherwise.
    patch : int
        LR patch side (64 as the paper).
    learning_rate, betas, eps : float, (float, float), float
        Adam settings of both networks (paper: 1e-4, (0.9, 0.999), 1e-8). Model files and
        checkpoints written before the rename call the learning rate ``lr``;
        :meth:`from_dict` reads them.
    lr_decay : float
        Learning-rate schedule of both networks: 0 (default, as the paper) keeps
        ``learning_rate`` constant; ``d`` in (0, 1] decays it along a half cosine from
        ``learning_rate`` at the first iteration to ``learning_rate * (1 - d)`` at the last
        (``iterations``). The rate follows the iteration count, so a resumed run continues the
        same curve; resuming with more ``iterations`` stretches the rest of it.
    w_vec, w_adv, w_reg : float
        Weights of the cycle consistency, adversarial and regularisation terms (Eq. 3). The
        paper uses 1, 1, 1. The defaults 1, 1e-4, 0 were chosen by measurement
        (docs/method.md, docs/benchmarks.md): with ``w_adv=1`` the adversarial term
        overrides the cycle consistency on simulated data, and with 1e-3 (SRGAN's weight)
        it still does in 300 iterations of the default network; the row/column-mean
        regulariser (``w_reg=1``) cost 1.5 dB PSNR and 0.05 SSIM at the default budget, so it
        is off by default (``l_reg`` is still computed and reported).
    w_res : float
        Weight of a penalty on the generator's change to its input, the mean squared
        ``SR - LR`` (LR upsampled bilinearly for ``scale > 1``): the output moves away from
        the TLI image only as far as the other terms ask, so where the fibres are consistent
        with the input (flat, noisy content) nothing is invented. 0 = none (the paper).
    w_anchor : float
        Fine-tuning only (needs ``init=``): weight of a penalty on the change to what the
        *initial* model outputs, the mean squared ``SR - G_init(LR)`` (``G_init`` frozen).
        Where ``w_res`` holds the output to the TLI image, this holds it to the starting
        model's, so a fine-tuning keeps what the model learned and moves only as far as its
        other terms (the cycle consistency on the user's fibres, the adversarial term) ask.
        0 = none.
    w_pix : float
        Weight of a supervised pixel loss against paired targets (``target="paired"``
        only; 0 = the unsupervised method).
    normalise_vec : bool
        Min-max normalise V and V^ per patch before l_vec, as the paper (see docs/method.md
        for the measured effect).
    paper_padding : bool
        Divide l_vec by 682 per patch as the paper's zero padding does, instead of by the
        number of valid fibres.
    vec_tolerance : float
        Noise-aware cycle consistency: ``l_vec`` only penalises the fibre-to-fibre part of
        the differences ``V^ - V`` beyond ``vec_tolerance`` times the noise level of the
        fibre values, and their smooth part (an offset or shading, measured by many fibres
        together) beyond its own, smaller noise band
        (:func:`~napari_cycsr.losses.l_vec_noise_aware`), so the network is not taught to
        reproduce the noise (0 = the paper's exact fit; ignored with ``normalise_vec`` or
        ``paper_padding``).
    noise_level : float or None
        Standard deviation of the noise on the fibre values, in the input images'
        intensity units, for ``vec_tolerance``; ``None`` = estimated from the training
        values, one level per image (:func:`~napari_cycsr.consistency.estimate_noise`, pooled
        over the image's frames).
    adv_loss : str
        Adversarial loss: "bce" (the paper's Eqs. 1 and 5), "hinge" or "relativistic"
        (:data:`~napari_cycsr.losses.ADV_LOSSES`).
    adv_highpass : float
        Frequency separation: when > 0 the discriminator sees only the fine detail of its
        inputs, ``x - blur(x)`` with a Gaussian blur of ``adv_highpass`` fibre spacings
        (:func:`~napari_cycsr.losses.highpass`), the band the fibres do not measure; the
        cycle consistency governs the cell means. 0 = the whole image (the paper).
    d_spectral_norm : bool
        Spectral normalisation of the discriminator's convolution and dense layers.
    augment_lr : bool
        Random flips and 90-degree rotations of every LR patch with its fibre cells (the
        method has no preferred direction; without it a network can learn the orientation
        of the training lattices and textures).
    noise_sigma : float
        Standard deviation of the white noise added to the discriminator's inputs (in
        normalised intensity units, image range about [0, 1]); 0.2 was best of 0, 0.05 and
        0.2 in the measurements of docs/method.md (the paper gives no value).
    consistency_steps : int
        Back-projection steps of a differentiable consistency layer put after the generator
        during training (:func:`~napari_cycsr.losses.consistency_layer`; 0 = none, as the
        paper). With it the discriminator and the losses see the generator's output made to
        agree with the measured fibre values, so the adversarial term can only shape detail
        the measurement leaves free; at inference the same correction is made by
        :func:`~napari_cycsr.consistency.project_consistent` (docs/method.md).
    w_multi : float
        Weight of the multi-frame cycle consistency (video only; 0 = off, the paper): the
        output for frame ``t``, moved by the registered motion, must reproduce the fibre
        values that a neighbouring frame ``t'`` measured of the same scene
        (:meth:`~napari_cycsr.data.LRPatchSampler.neighbours`). Each neighbour's cores fall
        on other points of the scene, so this term measures detail inside the cells that
        one frame cannot. Needs the frames' registration (``Trainer(registration=...)``,
        or :func:`napari_cycsr.workflows.train_video`, which registers the video itself).
        Same loss as ``l_vec`` (noise-aware with ``vec_tolerance``). See docs/video.md.
    multi_frames : int
        Neighbours of the multi-frame consistency: frames ``t'`` with
        ``1 <= |t' - t| <= multi_frames`` (one drawn per patch and iteration).
    d_steps : int
        Discriminator updates per generator update.
    warmup : int
        Initial iterations that train the generator on ``l_vec + l_reg`` only (no
        discriminator).
    target : str
        Target domain: "natural", "images", "downscaled" or "paired".
    augment : bool
        Random flips / 90-degree rotations of target patches.
    fov_fraction : float
        Minimum fraction of an LR patch inside the field of view (1.0: wholly inside).
    match_spacing : bool
        Fine-tuning only: when the initial model records the fibre spacing it learned at
        (``metadata["fibre_spacing"]``, e.g. the pretrained models) and the frames' fibre
        spacing differs from it by more than :data:`SPACING_MATCH` (5 %), the frames, their
        bundles, fibre values, registration and paired targets are resampled to the model's
        spacing before training (:func:`~napari_cycsr.data.resample_to_spacing`), as
        :func:`~napari_cycsr.inference.super_resolve` resamples frames before the model. The
        fine-tuned model then records the same spacing and is used the same way. False:
        train on the frames as they are (the filters meet the fibres at another scale).
    seed : int
        Seeds weight initialisation, patch sampling and noise.
    device : str
        "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:1", "mps".
    precision : str
        Arithmetic of the networks' forward passes: "auto", "fp32", "bf16" or "fp16" (CUDA
        only). Mixed precision runs convolutions and dense layers under autocast; weights,
        Adam states, losses and the Voronoi cell means stay float32, and the model file is
        the same whatever the precision. "auto": bfloat16 on a CPU with native bfloat16
        (AMX / AVX-512 BF16) where a one-off timing shows it faster, bfloat16 (else float16,
        with loss scaling) on CUDA, float32 elsewhere (docs/performance.md).
    threads : int or None
        CPU threads of torch during the run; ``None`` (default): as many as the CPUs that
        other processes leave free, at least 1 and at most torch's current setting
        (:func:`napari_cycsr._device.choose_threads`). Ignored on a GPU.
    checkpoint_every : int
        Write a checkpoint every this many iterations (0 = only on stop and at the end).
    preview_every : int
        Attach a preview (SR of a fixed LR crop) to every this many events (0 = never).
    checkpoint_dir : str or None
        Folder of the checkpoint file (``checkpoint.safetensors``); None = no checkpoint
        unless :class:`Trainer` is given ``checkpoint=``.
    """

    preset: str = "default"
    scale: int = 1
    residual: bool = True
    iterations: int = 2000
    batch_size: int | None = None
    patch: int = 64
    learning_rate: float = 1e-4
    lr_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    w_vec: float = 1.0
    w_adv: float = 1e-4
    w_reg: float = 0.0
    w_res: float = 0.0
    w_anchor: float = 0.0
    w_pix: float = 0.0
    normalise_vec: bool = False
    paper_padding: bool = False
    vec_tolerance: float = 0.0
    noise_level: float | None = None
    adv_loss: str = "bce"
    adv_highpass: float = 0.0
    d_spectral_norm: bool = False
    augment_lr: bool = False
    noise_sigma: float = 0.2
    consistency_steps: int = 0
    w_multi: float = 0.0
    multi_frames: int = 2
    d_steps: int = 1
    warmup: int = 0
    target: str = "natural"
    augment: bool = True
    fov_fraction: float = 1.0
    match_spacing: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    checkpoint_every: int = 200
    preview_every: int = 50
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        # frozen: the two normalisations go through object.__setattr__, once, here
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.checkpoint_dir is not None:
            object.__setattr__(self, "checkpoint_dir", os.fspath(self.checkpoint_dir))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` / ``TypeError`` naming the first invalid field."""
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.scale not in (1, 2, 4):
            raise ValueError(f"scale must be 1, 2 or 4, got {self.scale!r}")
        if self.target not in TARGET_KINDS:
            raise ValueError(f"target must be one of {TARGET_KINDS}, got {self.target!r}")
        positive_ints = {
            "iterations": self.iterations,
            "d_steps": self.d_steps,
            "multi_frames": self.multi_frames,
        }
        if self.batch_size is not None:
            positive_ints["batch_size"] = self.batch_size
        for name, value in positive_ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup", "checkpoint_every", "preview_every", "seed", "consistency_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if isinstance(self.patch, bool) or not isinstance(self.patch, int) or self.patch < 16:
            raise ValueError(f"patch must be an integer >= 16, got {self.patch!r}")
        for name in ("learning_rate", "eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if (
            isinstance(self.lr_decay, bool)
            or not isinstance(self.lr_decay, (int, float))
            or not 0.0 <= self.lr_decay <= 1.0
        ):
            raise ValueError(f"lr_decay must be a number in [0, 1], got {self.lr_decay!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.noise_level is not None and not (
            isinstance(self.noise_level, (int, float))
            and not isinstance(self.noise_level, bool)
            and math.isfinite(self.noise_level)
            and self.noise_level >= 0
        ):
            raise ValueError(f"noise_level must be None or a number >= 0, got {self.noise_level!r}")
        if self.adv_loss not in ADV_LOSSES:
            raise ValueError(f"adv_loss must be one of {ADV_LOSSES}, got {self.adv_loss!r}")
        for name in ("d_spectral_norm", "augment_lr", "match_spacing"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in (
            "w_vec",
            "w_adv",
            "w_reg",
            "w_res",
            "w_anchor",
            "w_pix",
            "noise_sigma",
            "vec_tolerance",
            "adv_highpass",
            "w_multi",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.w_pix > 0 and self.target != "paired":
            raise ValueError("w_pix > 0 needs target='paired' (a supervised pixel loss)")
        if not 0.0 < float(self.fov_fraction) <= 1.0:
            raise ValueError(f"fov_fraction must be in (0, 1], got {self.fov_fraction!r}")
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string, got {type(self.device).__name__}")
        object.__setattr__(self, "precision", check_precision(self.precision))
        check_threads(self.threads)
        check_setting_ranges(self)  # upper bounds (memory, patience): _validate.SETTING_RANGES

    @property
    def effective_batch_size(self) -> int:
        """``batch_size``, or its preset-dependent default (54 for "paper", else 16)."""
        if self.batch_size is not None:
            return self.batch_size
        return 54 if self.preset == "paper" else 16

    def network_config(self) -> Any:
        """The :class:`~napari_cycsr.models.NetworkConfig` of this run."""
        return get_preset(self.preset, scale=self.scale, residual=self.residual)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of all fields (flat, as the model files store it)."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    def grouped(self) -> dict[str, dict[str, Any]]:
        """The fields by group (:data:`TRAIN_GROUPS`): network, optimiser, losses, data, run.

        Examples
        --------
        >>> TrainConfig(preset="tiny").grouped()["network"]
        {'preset': 'tiny', 'scale': 1, 'residual': True}
        """
        flat = self.to_dict()
        return {group: {k: flat[k] for k in names} for group, names in TRAIN_GROUPS.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``.

        Older files' names are read too: ``lr`` is the ``learning_rate``.
        """
        data = dict(data)
        for old, new in RENAMED_FIELDS.items():
            if old in data:
                if new in data:
                    raise ValueError(f"training config has both {old!r} and {new!r}")
                data[new] = data.pop(old)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def paper(cls, **overrides: Any) -> TrainConfig:
        """The settings of Ravì et al.: SRGAN sizes, batch 54, loss weights 1, 1, 1, and the
        normalised, padded l_vec.

        The generator predicts the image itself (``residual=False``), as SRGAN does.
        """
        base = {
            "preset": "paper",
            "residual": False,
            "w_adv": 1.0,
            "w_reg": 1.0,
            "batch_size": 54,
            "normalise_vec": True,
            "paper_padding": True,
            "vec_tolerance": 0.0,
        }
        return cls(**{**base, **overrides})
