"""napari-cycsr: unsupervised super-resolution of fibre-bundle / pCLE endomicroscopy images.

Implements Ravì et al., "Adversarial training with cycle consistency for unsupervised
super-resolution in endomicroscopy": an SRGAN-style generator trained against a discriminator
on unpaired high-resolution images, held to the physics of the fibre bundle by a Voronoi cycle
consistency.

The public scripting API is re-exported here and imported lazily, so ``import napari_cycsr``
is cheap and does not load torch until a torch-backed name is used.

Importing the package before torch also lets torch's idle OpenMP threads sleep instead of
spinning (``OMP_WAIT_POLICY=PASSIVE``, set only where the environment does not say otherwise;
:func:`napari_cycsr._device.configure_openmp`): spinning threads make torch several times
slower on a machine whose cores other programs are using (docs/performance.md).
"""

from __future__ import annotations

import importlib
from typing import Any

from . import _device

_device.configure_openmp()

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # fibre-bundle physics and simulation
    "FibreBundle": "fibres",
    "bundle_fov": "fibres",
    "estimate_spacing": "fibres",
    "DEFAULT_SPACING": "simulate",
    "simulate_pcle": "simulate",
    "hexagonal_lattice": "simulate",
    "PCLESimulation": "simulate",
    "simulate_pcle_video": "simulate",
    "PCLEVideo": "simulate",
    # video: reading, registration, fusion (HR^)
    "read_video": "video",
    "register": "video",
    "Registration": "video",
    "fuse": "video",
    "fuse_video": "video",
    "mosaic": "video",
    "leave_one_out": "video",
    "estimate_lattice": "video",
    "estimate_gains": "video",
    # metrics and baselines
    "gcf": "metrics",
    "delta_gcf": "metrics",
    "ssim": "metrics",
    "psnr": "metrics",
    "tot_cs": "metrics",
    "evaluate": "metrics",
    "format_table": "metrics",
    "rows_to_csv": "metrics",
    "cycle_error": "metrics",
    "wiener": "baselines",
    "sharpen": "baselines",
    "tli": "baselines",
    "backproject": "baselines",
    "project_consistent": "consistency",
    "cell_means": "consistency",
    "upsampled_bundle": "consistency",
    # the method
    "NetworkConfig": "config",
    "PRESETS": "config",
    "SRModel": "models",
    "TrainConfig": "config",
    "Trainer": "training",
    "train": "training",
    "train_video": "workflows",
    "TrainEvent": "training",
    "super_resolve": "inference",
    "iter_super_resolve": "inference",
    "resolve_device": "_device",
    "available_devices": "_device",
    "check_image": "inference",
    "save_checkpoint": "io",
    "load_checkpoint": "io",
    "load_model": "io",
    "save_model": "io",
    # pretrained models shipped with the package
    "pretrained": "_pretrained",
    "list_pretrained": "_pretrained",
    # models kept in this session and in the models folder
    "models_in_session": "models_store",
    "models_folder": "models_store",
    "saved_models": "models_store",
    # the paper's MOS study
    "RatingSession": "rating",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_cycsr' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
