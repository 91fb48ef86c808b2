"""Pretrained models shipped inside the package: :func:`pretrained` and :func:`list_pretrained`.

The weights live in ``napari_cycsr/pretrained/`` as ordinary model files (safetensors + JSON
header, :func:`napari_cycsr.io.load_model`: loading never unpickles), listed with what they
were trained on in ``pretrained/manifest.json``. ``benchmarks/train_pretrained.py``
reproduces them and writes their learning curves (docs/pretrained.md).

A pretrained model records the fibre spacing it was trained on
(``metadata["fibre_spacing"]``); :func:`~napari_cycsr.inference.super_resolve` resamples
other bundles' images to that spacing and back, so one model serves any bundle.

The code lives in this private module (and the public names in ``napari_cycsr``) because a
module named ``pretrained`` would shadow the function ``napari_cycsr.pretrained``.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PRETRAINED", "list_pretrained", "pretrained", "pretrained_path"]

#: Name of the model :func:`pretrained` returns by default.
DEFAULT_PRETRAINED = "default"
_MANIFEST = "manifest.json"


def _folder() -> Path:
    return Path(str(resources.files("napari_cycsr").joinpath("pretrained")))


def _manifest() -> dict[str, Any]:
    path = _folder() / _MANIFEST
    if not path.is_file():
        return {"models": []}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ValueError(f"{path} is not a pretrained-model manifest (no 'models' list)")
    return data


def list_pretrained() -> list[dict[str, Any]]:
    """The pretrained models that ship with the package, and what they were trained on.

    Returns
    -------
    list of dict
        One entry per model: ``name``, ``description``, ``trained_on`` (the training data,
        in words), ``pretrain_images`` and ``target_images`` (the scikit-image pictures it
        was trained on and its natural target pictures, by name; absent in older
        manifests), ``preset``, ``iterations``, ``fibre_spacing`` (px, median
        nearest-neighbour distance of the training fibres), ``noise`` (fibre-value noise of
        the training data), ``file``, ``sha256`` and ``learning_curve`` (where the curve
        is); in the manifest's order, the default first.

    Examples
    --------
    >>> [m["name"] for m in list_pretrained()][:1]
    ['default']
    """
    return [dict(entry) for entry in _manifest()["models"]]


def pretrained_path(name: str = DEFAULT_PRETRAINED) -> Path:
    """Path of a pretrained model's file (checked against the manifest's SHA-256).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones), or a file whose checksum
        differs from the manifest's (a damaged installation).
    FileNotFoundError
        If the manifest lists the model but its file is missing.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    entries = {m["name"]: m for m in list_pretrained()}
    if name not in entries:
        known = ", ".join(repr(k) for k in entries) or "none installed"
        raise ValueError(f"unknown pretrained model {name!r}; expected one of: {known}")
    entry = entries[name]
    path = _folder() / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"the pretrained model file {path} is missing; reinstall")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if entry.get("sha256") and digest != entry["sha256"]:
        raise ValueError(
            f"the pretrained model file {path} is damaged (SHA-256 {digest[:12]}..., the "
            f"manifest says {entry['sha256'][:12]}...); reinstall napari-cycsr"
        )
    return path


def pretrained(name: str = DEFAULT_PRETRAINED, *, device: str = "cpu") -> Any:
    """A ready pretrained model (no training needed).

    Parameters
    ----------
    name : str, optional
        One of :func:`list_pretrained`'s names (default ``"default"``).
    device : str, optional
        Where to put the weights (``"cpu"``, ``"cuda"``, ``"mps"``, ``"auto"``).

    Returns
    -------
    SRModel
        The model; ``metadata["pretrained_name"]`` is ``name`` and
        ``metadata["fibre_spacing"]`` the spacing it expects (other spacings are resampled
        by :func:`~napari_cycsr.inference.super_resolve`).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_cycsr.inference import super_resolve
    >>> from napari_cycsr.simulate import simulate_pcle
    >>> model = pretrained()
    >>> sim = simulate_pcle(np.random.default_rng(0).random((64, 64)), seed=0)
    >>> super_resolve(model, sim.lr, bundle=sim.bundle, device="cpu").shape
    (64, 64)
    """
    from .io import load_model

    model = load_model(pretrained_path(name), device=device)
    model.metadata["pretrained_name"] = name
    return model
