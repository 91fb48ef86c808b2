"""The pipelines every front end shares: one implementation for the CLI, the widgets and scripts.

* :func:`iter_reconstruct` / :func:`reconstruct`: raw bundle frames (or a stack) -> core
  values -> TLI, optionally projected onto the core values (the training-free sharpening),
  frame block by frame block with progress. ``cycsr reconstruct`` and the Fibres widget's
  Reconstruct call it.
* :func:`checkpoint_path_for`: where the training checkpoint of a model file lives
  (``cycsr train`` and the Train widget name it the same way, so ``--resume`` finds what the
  widget wrote and the other way round).

Nothing here imports torch, Qt or napari.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._progress import drain
from .config import CHECKPOINT_NAME
from .fibres import FibreBundle

__all__ = [
    "CHECKPOINT_NAME",
    "FRAMES_PER_STEP",
    "ReconstructProgress",
    "checkpoint_dir_for",
    "checkpoint_path_for",
    "iter_reconstruct",
    "reconstruct",
    "train_video",
    "video_training",
    "VideoTraining",
]

#: Frames reconstructed per progress step (a bounded amount of work between two events).
FRAMES_PER_STEP = 8


@dataclass(frozen=True)
class ReconstructProgress:
    """One step of :func:`iter_reconstruct`: ``done`` of ``total`` steps and what is next."""

    done: int
    total: int
    text: str


def iter_reconstruct(
    raw: Any,
    bundle: FibreBundle,
    *,
    background: Any = None,
    project: int = 0,
    project_noise: Any = "auto",
    frames_per_step: int = FRAMES_PER_STEP,
) -> Generator[ReconstructProgress, None, tuple[np.ndarray, np.ndarray]]:
    """Reconstruct raw frames step by step: yields progress, *returns* ``(image, values)``.

    Parameters
    ----------
    raw : array_like, shape (H, W) or (..., H, W)
        Raw bundle frame(s) on the bundle's grid (numpy or dask; read one block at a time).
    bundle : FibreBundle
        The fibre cores.
    background : array_like (H, W), optional
        Flat-field frame: core values are divided by the background's.
    project : int
        Steps of the projection onto the core values after the TLI (0: plain TLI).
    project_noise : "auto", None or float
        Noise handling of the projection (:func:`~napari_cycsr.consistency.project_consistent`).
    frames_per_step : int
        Frames per progress step.

    Returns
    -------
    image : ndarray, float32, the shape of ``raw``
    values : ndarray, float32, ``raw.shape[:-2] + (N,)``: the core values

    Examples
    --------
    >>> import numpy as np
    >>> from napari_cycsr.simulate import simulate_pcle
    >>> sim = simulate_pcle(np.random.default_rng(0).random((64, 64)), seed=0)
    >>> image, values = reconstruct(sim.lr, sim.bundle, project=2)
    >>> image.shape, values.shape == (sim.bundle.n_fibres,)
    ((64, 64), True)
    """
    if isinstance(project, bool) or not isinstance(project, (int, np.integer)) or project < 0:
        raise ValueError(f"project must be a whole number of steps >= 0, got {project!r}")
    if isinstance(frames_per_step, bool) or int(frames_per_step) < 1:
        raise ValueError(f"frames_per_step must be >= 1, got {frames_per_step!r}")
    if not hasattr(raw, "reshape"):
        raw = np.asarray(raw)
    shape = tuple(int(n) for n in np.shape(raw))
    if len(shape) < 2 or shape[-2:] != tuple(bundle.shape):
        raise ValueError(
            f"the frames are {'x'.join(map(str, shape))}; expected (..., {bundle.shape[0]}, "
            f"{bundle.shape[1]}), the bundle's image size"
        )
    lead = shape[:-2]
    n_frames = int(np.prod(lead)) if lead else 1
    frames = raw.reshape(n_frames, *shape[-2:]) if lead else raw[None]
    out = np.empty((n_frames, *bundle.shape), dtype=np.float32)
    values_out = np.empty((n_frames, bundle.n_fibres), dtype=np.float32)
    starts = range(0, n_frames, int(frames_per_step))
    total = len(starts) * (2 if project else 1)
    for k, start in enumerate(starts):
        stop = min(start + int(frames_per_step), n_frames)
        yield ReconstructProgress(
            k, total, f"frames {start + 1}-{stop} of {n_frames}: core values and TLI..."
        )
        block = np.asarray(frames[start:stop], dtype=np.float32)
        values = bundle.core_values(block, background=background)
        values_out[start:stop] = values
        out[start:stop] = bundle.reconstruct(values)
        if project:
            from .consistency import project_consistent

            yield ReconstructProgress(
                len(starts) + k, total, f"frames {start + 1}-{stop}: projection ({project} steps)"
            )
            out[start:stop] = project_consistent(
                out[start:stop], bundle, values, iterations=int(project), noise=project_noise
            )
    yield ReconstructProgress(total, total, "done")
    if lead:
        return out.reshape(*lead, *bundle.shape), values_out.reshape(*lead, bundle.n_fibres)
    return out[0], values_out[0]


def reconstruct(raw: Any, bundle: FibreBundle, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`iter_reconstruct` run to the end: ``(image, values)``."""
    return drain(iter_reconstruct(raw, bundle, **options))


def checkpoint_dir_for(model_path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder of a model file: ``MODEL_checkpoints`` beside it.

    Examples
    --------
    >>> checkpoint_dir_for("runs/model.safetensors").as_posix()
    'runs/model_checkpoints'
    """
    path = Path(model_path)
    return path.with_name(f"{path.stem}_checkpoints")


def checkpoint_path_for(model_path: str | os.PathLike[str]) -> Path:
    """The checkpoint file of a model file: ``MODEL_checkpoints/checkpoint.safetensors``.

    Examples
    --------
    >>> checkpoint_path_for("model.safetensors").as_posix()
    'model_checkpoints/checkpoint.safetensors'
    """
    return checkpoint_dir_for(model_path) / CHECKPOINT_NAME


@dataclass
class VideoTraining:
    """What a training run on a video needs (:func:`video_training`).

    Pass ``lr_images``, ``bundles``, ``values``, ``registration`` and ``target_images`` to
    :class:`~napari_cycsr.training.Trainer` (or :func:`~napari_cycsr.training.train`) and
    ``settings`` as :class:`~napari_cycsr.config.TrainConfig` fields.
    """

    lr_images: list[np.ndarray]
    bundles: list[FibreBundle]
    values: list[np.ndarray] | None
    registration: list[Any]
    target_images: list[np.ndarray] | None
    settings: dict[str, Any]
    frames_used: np.ndarray
    #: noise sd of the fibre values of each image (values' units) for ``Trainer(noise_levels=)``;
    #: None: the trainer estimates it from each frame alone
    noise_levels: list[float | None] | None = None
    #: how the noise level was found, for messages ("" when it was not)
    noise_note: str = ""


def video_training(
    video: Any,
    bundle: FibreBundle,
    *,
    registration: Any = None,
    values: Any = None,
    w_multi: float = 1.0,
    fused_targets: bool = True,
    w_pix: float = 1.0,
    window: int = 8,
    noise: Any = "auto",
    progress: Any = None,
) -> VideoTraining:
    """Prepare training on a pCLE video: registration, multi-frame term, fused targets.

    The frames are registered (:func:`napari_cycsr.video.register`, unless ``registration``
    is given). With ``fused_targets`` the sliding-window fused video
    (:func:`napari_cycsr.video.fuse_video`: each frame fused with its ``window`` nearest
    good neighbours) becomes a paired target of the LR frames (``target="paired"``) with a
    pixel loss of weight ``w_pix``: the paper's ``T_pair`` made from the video itself. Only
    the frames registered with enough confidence are trained on then (the others have no
    fused frame). ``w_multi`` weighs the multi-frame cycle consistency (0 = off).
    docs/video.md#learning-from-video has the measurements behind the defaults.

    Parameters
    ----------
    video : array_like, shape (T, H, W)
        The LR (TLI) frames, in order, T >= 2.
    bundle : FibreBundle
        Their fibres.
    registration : Registration or array_like, shape (T, 2), optional
        The frames' motion (default: registered here).
    values : array_like, shape (T, N), optional
        Measured fibre values (default: sampled from the frames).
    w_multi, fused_targets, w_pix, window
        As above.
    noise : "auto", "video", "frames" or float, optional
        Noise sd of the fibre values, for the noise-aware ``l_vec`` (``vec_tolerance``, e.g.
        of a fine-tuned pretrained model). "video": estimated from the video
        (:func:`napari_cycsr.video.estimate_video_noise`: each frame against the fusion of
        the others; the smaller of that and the frames' own estimate, both upper bounds):
        a frame alone cannot tell fine texture from noise and overestimates it there
        (docs/video.md: 5.1x the true level on the texture crops at sd 0.01, the video
        1.5x); "frames": from each frame alone (the trainer's default); a number: that
        level, in the values' units. "auto" (default): "video" without fused targets, where
        ``l_vec`` and the multi-frame term are what hold the output to the measurement (up
        to +0.5 dB on textures), "frames" with them, where the fused target leads and a
        tighter ``l_vec`` only pulls towards one noisy frame (no gain, up to -0.1 dB;
        docs/video.md, "The noise level it learns with").
    progress : callable, optional
        Called with the registration's and the fusion's progress events.

    Returns
    -------
    VideoTraining
    """
    from types import SimpleNamespace

    from .data import check_poses
    from .video import Registration, fuse_video, register

    frames = np.asarray(video)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(
            f"video must be a (T, H, W) stack of at least 2 frames, got shape {frames.shape}"
        )
    n = frames.shape[0]
    if registration is None:
        registration = register(frames, bundle, progress=progress)
    ((shifts, angles, good),) = check_poses([registration], [frames])  # the sampler's rule
    if not isinstance(registration, Registration):  # shifts, or another object with them
        registration = Registration(
            shifts=shifts, confidence=good.astype(np.float64), angles=angles,
            reference=int(np.argmax(good)), overlap=np.ones(n), anchors=np.zeros(n, np.int64),
            min_confidence=0.5, shape=tuple(frames.shape[1:]),
        )  # fmt: skip
    if int(good.sum()) < 2:
        raise ValueError(
            "fewer than 2 frames of the video are registered (confidence too low): the frames "
            "may not show one moving scene; train on them without the video options"
        )
    stack_values = None if values is None else np.asarray(values, np.float32).reshape(n, -1)
    if isinstance(noise, str) and noise == "auto":
        noise = "frames" if fused_targets else "video"
    level, note = _video_noise_level(noise, frames, bundle, registration, stack_values)
    settings: dict[str, Any] = {"w_multi": float(w_multi)}
    used = np.arange(n)
    targets = None
    if fused_targets:
        fused = fuse_video(frames, bundle, registration, window=window, progress=progress)
        used = np.flatnonzero(good)
        frames, fused = frames[used], fused[used]
        shifts, angles, good = shifts[used], angles[used], good[used]
        stack_values = None if stack_values is None else stack_values[used]
        targets = [fused.astype(np.float32)]
        settings.update(target="paired", w_pix=float(w_pix))
    pose = SimpleNamespace(shifts=shifts, angles=angles, good=good)
    return VideoTraining(
        lr_images=[frames],
        bundles=[bundle],
        values=None if stack_values is None else [stack_values],
        registration=[pose],
        target_images=targets,
        settings=settings,
        frames_used=used,
        noise_levels=None if level is None else [level],
        noise_note=note,
    )


def _video_noise_level(
    noise: Any, frames: np.ndarray, bundle: FibreBundle, registration: Any, values: Any
) -> tuple[float | None, str]:
    """:func:`video_training`'s ``noise``: the level (None: per frame) and a note on it."""
    if isinstance(noise, str):
        if noise == "frames":
            return None, ""
        if noise != "video":
            raise ValueError(f"noise must be 'auto', 'video', 'frames' or a number, got {noise!r}")
        from .consistency import estimate_noise
        from .video import estimate_video_noise, frame_values

        if values is None:
            values = frame_values(frames, bundle, kind="reconstructed")
        alone = float(estimate_noise(values, bundle, pooled=True))
        try:
            video = estimate_video_noise(values, bundle, registration, combine=False)
        except ValueError as err:  # e.g. no core the other frames cover: one frame's estimate
            return None, f"noise of the fibre values from each frame alone (the video: {err})"
        # both are upper bounds of the true level: the smaller is the tighter
        return min(video, alone), (
            f"noise of the fibre values: sd {min(video, alone):.4g}, the smaller of the "
            f"video's estimate ({video:.4g}) and each frame's alone ({alone:.4g})"
        )
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.number)):
        raise TypeError(f"noise must be 'auto', 'video', 'frames' or a number, got {noise!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return float(noise), f"noise of the fibre values: sd {float(noise):.4g} (given)"


def learns_noise_aware(options: Any) -> bool:
    """Whether a run with these :func:`~napari_cycsr.training.train` options has a noise-aware
    ``l_vec`` (``vec_tolerance > 0``), as far as it is known before the run starts: a
    ``config`` or a ``vec_tolerance`` given says so; else a fine-tuning (``init``) carries its
    model's recipe (every pretrained model's is noise-aware), and a new run has
    :class:`~napari_cycsr.config.TrainConfig`'s default (not noise-aware).

    Examples
    --------
    >>> learns_noise_aware({}), learns_noise_aware({"vec_tolerance": 1.5})
    (False, True)
    >>> learns_noise_aware({"init": "a model"}), learns_noise_aware({"init": 1, "vec_tolerance": 0})
    (True, False)
    """
    config = options.get("config")
    if config is not None:
        return bool(config.vec_tolerance)
    if options.get("vec_tolerance") is not None:
        return bool(options["vec_tolerance"])
    return options.get("init") is not None


def train_video(
    video: Any,
    bundle: FibreBundle,
    *,
    registration: Any = None,
    values: Any = None,
    w_multi: float = 1.0,
    fused_targets: bool = True,
    w_pix: float = 1.0,
    window: int = 8,
    noise: Any = "auto",
    progress: Any = True,
    **options: Any,
) -> Any:
    """Train on a pCLE video: what one video teaches beyond one frame (docs/video.md).

    :func:`video_training` (registration, the multi-frame cycle consistency, the fused video
    as paired targets), then :func:`napari_cycsr.training.train`.

    Parameters
    ----------
    video, bundle, registration, values, w_multi, fused_targets, w_pix, window, noise
        As :func:`video_training`.
    progress : bool or callable, optional
        As :func:`~napari_cycsr.training.train`.
    **options
        Other arguments of :func:`~napari_cycsr.training.train` (``config``, ``init``,
        ``checkpoint``, :class:`~napari_cycsr.config.TrainConfig` fields ...).

    Returns
    -------
    SRModel

    Examples
    --------
    >>> from skimage import data
    >>> from napari_cycsr.simulate import simulate_pcle_video
    >>> vid = simulate_pcle_video(data.brick()[:150, :150] / 255.0, 4, shape=(112, 112))
    >>> model = train_video(vid.lr, vid.bundle, registration=vid.shifts, preset="tiny",
    ...                     iterations=2, batch_size=2, patch=32, fov_fraction=0.9,
    ...                     device="cpu", progress=False)
    >>> config = model.metadata["train_config"]
    >>> config["w_multi"], config["target"], config["w_pix"]
    (1.0, 'paired', 1.0)
    """
    from .training import train

    if isinstance(noise, str) and noise == "auto" and not learns_noise_aware(options):
        noise = "frames"  # no noise-aware l_vec: the video's level would not be used
    prepared = video_training(
        video, bundle, registration=registration, values=values, w_multi=w_multi,
        fused_targets=fused_targets, w_pix=w_pix, window=window, noise=noise,
    )  # fmt: skip
    settings = {**prepared.settings, **options}
    target = settings.pop("target", None)
    return train(
        prepared.lr_images, prepared.bundles, target, values=prepared.values,
        registration=prepared.registration, target_images=prepared.target_images,
        noise_levels=prepared.noise_levels, progress=progress, **settings,
    )  # fmt: skip
