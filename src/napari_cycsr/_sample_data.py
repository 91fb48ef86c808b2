"""Sample data for napari's File > Open Sample menu (generated offline in about a second).

* **Synthetic pCLE**: scikit-image's cameraman (256x256) seen through a simulated fibre
  bundle: the low-resolution TLI image, the fibre centres and the ground-truth HR image.
* **Synthetic pCLE video**: the cameraman moving behind a fixed simulated bundle (12 frames,
  a sub-pixel random walk): the TLI video, the fibres and the true frames; the input of the
  Video widget.
* **Raw fibre-bundle frame**: what a camera behind a bundle records before reconstruction:
  one bright Gaussian core per fibre, each with its own transmission, plus the matching
  background (flat-field) frame. This is the input of the Fibres widget's *Detect cores*.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "BUNDLE_KEY",
    "raw_bundle_frame",
    "render_raw_frame",
    "synthetic_pcle",
    "synthetic_pcle_video",
]

#: Metadata key under which a Points layer keeps the FibreBundle it was made from (the sample
#: layers here and the widgets' fibre layers).
BUNDLE_KEY = "cycsr_bundle"

LayerDataTuple = tuple[Any, dict[str, Any], str]


def _cameraman(size: int) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    image = data.camera().astype(np.float32) / 255.0
    return resize(image, (size, size), order=1, anti_aliasing=True).astype(np.float32)


def synthetic_pcle(seed: int = 0) -> list[LayerDataTuple]:
    """Simulated pCLE of the cameraman: LR (TLI) image, fibre Points and HR ground truth.

    Parameters
    ----------
    seed : int
        Seed of the fibre jitter and measurement noise.

    Returns
    -------
    list of LayerDataTuple
        ``ground truth HR`` (hidden), ``pCLE LR (TLI)`` and ``fibres`` layers.
    """
    from napari_cycsr.simulate import simulate_pcle

    hr = _cameraman(256)
    sim = simulate_pcle(hr, seed=seed)
    bundle = sim.bundle
    fov = bundle.fov_mask
    lr = np.where(fov, sim.lr, 0).astype(np.float32)
    return [
        (
            sim.hr.astype(np.float32),
            {"name": "ground truth HR", "visible": False, "contrast_limits": (0.0, 1.0)},
            "image",
        ),
        (lr, {"name": "pCLE LR (TLI)", "contrast_limits": (0.0, 1.0)}, "image"),
        (
            np.asarray(bundle.centres, dtype=float),
            {
                "name": "fibres",
                "size": 0.5 * float(bundle.spacing),
                "face_color": "yellow",
                "border_width": 0,
                "opacity": 0.6,
                "visible": False,
                "metadata": {BUNDLE_KEY: bundle, "fibre_values": sim.values},
            },
            "points",
        ),
    ]


def synthetic_pcle_video(seed: int = 0, n_frames: int = 12) -> list[LayerDataTuple]:
    """A simulated pCLE video: the cameraman moving behind a fixed fibre bundle.

    Parameters
    ----------
    seed : int
        Seed of the fibres, the motion and the noise.
    n_frames : int
        Number of frames.

    Returns
    -------
    list of LayerDataTuple
        ``true frames`` (hidden), ``pCLE video (TLI)`` ``(T, Y, X)`` and ``video fibres``
        (the fibre centres, with the bundle and every frame's fibre values in metadata).
    """
    from napari_cycsr.simulate import simulate_pcle_video

    vid = simulate_pcle_video(_cameraman(300), n_frames, seed=seed, step=0.7, noise=0.01)
    fov = vid.bundle.fov_mask
    lr = np.where(fov, vid.lr, 0).astype(np.float32)
    return [
        (
            vid.frames.astype(np.float32),
            {"name": "true frames", "visible": False, "contrast_limits": (0.0, 1.0)},
            "image",
        ),
        (lr, {"name": "pCLE video (TLI)", "contrast_limits": (0.0, 1.0)}, "image"),
        (
            np.asarray(vid.bundle.centres, dtype=float),
            {
                "name": "video fibres",
                "size": 0.5 * float(vid.bundle.spacing),
                "face_color": "yellow",
                "border_width": 0,
                "opacity": 0.6,
                "visible": False,
                "metadata": {
                    BUNDLE_KEY: vid.bundle,
                    "fibre_values": vid.values,
                    "true_shifts": vid.shifts,
                },
            },
            "points",
        ),
    ]


def render_raw_frame(
    image: np.ndarray,
    centres: np.ndarray,
    *,
    core_sigma: float,
    transmission: np.ndarray | None = None,
    cladding: float = 0.02,
    noise: float = 0.005,
    seed: int = 0,
) -> np.ndarray:
    """Render a raw bundle frame: a Gaussian spot per fibre, bright as the image under it.

    Parameters
    ----------
    image : ndarray (H, W)
        The scene in [0, 1].
    centres : ndarray (N, 2)
        Fibre centres (y, x) in pixels.
    core_sigma : float
        Gaussian width of a core's light spot, in pixels.
    transmission : ndarray (N,), optional
        Relative throughput of each fibre (1 when omitted).
    cladding, noise : float
        Constant cladding leak and Gaussian noise level.
    seed : int
        Seed of the noise.

    Returns
    -------
    ndarray (H, W) float32
    """
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    centres = np.asarray(centres, dtype=float)
    h, w = image.shape
    yi = np.clip(np.round(centres[:, 0]).astype(int), 0, h - 1)
    xi = np.clip(np.round(centres[:, 1]).astype(int), 0, w - 1)
    values = image[yi, xi]
    if transmission is not None:
        values = values * np.asarray(transmission, dtype=np.float32)
    # bilinear splat of each core's light, then one Gaussian blur draws every spot
    impulses = np.zeros((h + 1, w + 1), dtype=np.float64)
    y0 = np.floor(centres[:, 0]).astype(int)
    x0 = np.floor(centres[:, 1]).astype(int)
    fy = centres[:, 0] - y0
    fx = centres[:, 1] - x0
    for dy, dx, weight in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        np.add.at(impulses, (y0 + dy, x0 + dx), weight * values)
    frame = ndimage.gaussian_filter(impulses[:h, :w], core_sigma) * (2 * np.pi * core_sigma**2)
    rng = np.random.default_rng(seed)
    frame = frame + cladding + rng.normal(0.0, noise, frame.shape)
    return np.clip(frame, 0, None).astype(np.float32)


def raw_bundle_frame(seed: int = 0) -> list[LayerDataTuple]:
    """A synthetic raw bundle frame (cores visible) of the cameraman and its background.

    Fibres lie on a jittered hexagonal lattice (spacing 4.5 px) in a circular field of view;
    each transmits a different fraction of light, which dividing by the background (a frame
    of a uniform target) removes.

    Returns
    -------
    list of LayerDataTuple
        ``raw bundle background`` (hidden) and ``raw bundle frame`` image layers.
    """
    from napari_cycsr.simulate import hexagonal_lattice

    shape = (384, 384)
    spacing = 4.5
    centres = hexagonal_lattice(shape, spacing, jitter=0.1, fov="circle", seed=seed)
    rng = np.random.default_rng(seed + 1)
    transmission = rng.uniform(0.6, 1.0, len(centres)).astype(np.float32)
    scene = 0.1 + 0.9 * _cameraman(shape[0])
    sigma = 0.22 * spacing
    raw = render_raw_frame(scene, centres, core_sigma=sigma, transmission=transmission, seed=seed)
    flat = np.ones(shape, dtype=np.float32)
    background = render_raw_frame(
        flat, centres, core_sigma=sigma, transmission=transmission, seed=seed + 2
    )
    return [
        (background, {"name": "raw bundle background", "visible": False}, "image"),
        (raw, {"name": "raw bundle frame"}, "image"),
    ]
