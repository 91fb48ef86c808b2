"""Where models live between a training run and the next use: this session, and a folder.

Two stores, both usable from a script, napari's console and the widgets:

* **The session**: models trained in this Python process by the Train widget (or registered
  by a script) are kept in :data:`SESSION`, by name. :func:`models_in_session` returns them,
  e.g. in napari's console::

      >>> from napari_cycsr import models_in_session, super_resolve   # doctest: +SKIP
      >>> model = models_in_session()["default x1, 300 it on pCLE LR (TLI)"]   # doctest: +SKIP

* **The models folder**: a folder in the user's data directory (``platformdirs``; on Linux
  ``~/.local/share/napari-cycsr/models``; the environment variable ``NAPARI_CYCSR_MODELS``
  points it elsewhere) that outlives the session. The Train widget saves every model it
  trains there (unless told to save elsewhere) and the Super-resolve widget lists its files.
  :func:`saved_models` lists it; :func:`save_to_folder` adds a model.

A model's *details* (network preset, scale, fibre spacing, training data, iterations) come
from the JSON metadata of its file (read without loading the weights) or of the in-memory
model: :func:`model_details`.

This module imports neither Qt nor napari, and torch only when a model file is written or read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psygnal import Signal

__all__ = [
    "ENV_FOLDER",
    "SESSION",
    "ModelRegistry",
    "SavedModel",
    "model_details",
    "models_folder",
    "models_in_session",
    "saved_models",
    "save_to_folder",
    "unique_name",
]

#: Environment variable that overrides the models folder.
ENV_FOLDER = "NAPARI_CYCSR_MODELS"


class ModelRegistry:
    """Models made in this Python session, by name (newest last).

    ``changed`` is emitted whenever a model is added or removed, so that lists (the
    Super-resolve widget's model menu) can refresh.
    """

    changed = Signal()

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}

    def register(self, name: str, model: Any, *, replace: bool = False) -> str:
        """Keep ``model`` under ``name`` and return the name it was stored under.

        Parameters
        ----------
        name : str
            Wanted name. When it is taken and ``replace`` is False, ``" (2)"``, ``" (3)"``...
            is appended: a new model never silently replaces an earlier one.
        model : SRModel
            The model.
        replace : bool
            Replace a model of the same name instead.

        Returns
        -------
        str
            The name under which the model is kept.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a model needs a non-empty name")
        name = name.strip()
        if replace:
            self._models.pop(name, None)
        else:
            name = unique_name(name, self._models)
        self._models[name] = model
        self.changed.emit()
        return name

    def get(self, name: str) -> Any:
        """The model registered as ``name``; KeyError with the known names otherwise."""
        try:
            return self._models[name]
        except KeyError:
            raise KeyError(f"no model named {name!r}; known: {list(self._models)}") from None

    def names(self) -> list[str]:
        """Registered names, newest first."""
        return list(reversed(self._models))

    def as_dict(self) -> dict[str, Any]:
        """A new dict name -> model, newest first."""
        return {name: self._models[name] for name in self.names()}

    def remove(self, name: str) -> None:
        """Forget the model ``name`` (KeyError when unknown)."""
        self.get(name)
        del self._models[name]
        self.changed.emit()

    def clear(self) -> None:
        """Forget every model."""
        self._models.clear()
        self.changed.emit()

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, name: object) -> bool:
        return name in self._models


#: The models of this session (the Train widget registers here).
SESSION = ModelRegistry()


def models_in_session() -> dict[str, Any]:
    """The models trained or registered in this session, by name, newest first.

    Returns
    -------
    dict of str to SRModel
        A new dict (changing it changes nothing in the session).

    Examples
    --------
    >>> from napari_cycsr import models_in_session
    >>> isinstance(models_in_session(), dict)
    True
    """
    return SESSION.as_dict()


def unique_name(name: str, taken: Any) -> str:
    """``name``, or ``name (2)``, ``name (3)``... whichever is not in ``taken``."""
    if name not in taken:
        return name
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"


def models_folder(*, create: bool = False) -> Path:
    """The folder that keeps models across sessions.

    ``$NAPARI_CYCSR_MODELS`` when set, else ``<user data dir>/napari-cycsr/models``
    (``platformdirs.user_data_path``).

    Parameters
    ----------
    create : bool
        Create the folder (and its parents) when missing.

    Returns
    -------
    pathlib.Path
    """
    override = os.environ.get(ENV_FOLDER, "").strip()
    if override:
        folder = Path(override).expanduser()
    else:
        from platformdirs import user_data_path

        folder = user_data_path("napari-cycsr", appauthor=False) / "models"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class SavedModel:
    """A model file of the models folder: its path, display name and metadata."""

    path: Path
    name: str
    metadata: dict[str, Any]
    network: dict[str, Any]

    @property
    def details(self) -> str:
        """One line: preset, scale, fibre spacing, training data, iterations (see below)."""
        return model_details(self.metadata, self.network)


def saved_models(folder: str | os.PathLike[str] | None = None) -> list[SavedModel]:
    """The model files of the models folder (or ``folder``), newest first.

    Checkpoints (``*.checkpoint.safetensors``) and files that are not napari-cycsr models
    are skipped. Only the JSON header of each file is read, never the weights (and never
    anything that could run code).

    Parameters
    ----------
    folder : path-like, optional
        Default: :func:`models_folder`.

    Returns
    -------
    list of SavedModel
    """
    folder = models_folder() if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    from .io import read_header

    found: list[tuple[float, SavedModel]] = []
    for path in folder.glob("*.safetensors"):
        if path.name.endswith(".checkpoint.safetensors") or not path.is_file():
            continue
        try:
            header = read_header(path)
        except (OSError, ValueError):
            continue
        if "network" not in header:
            continue
        metadata = dict(header.get("metadata") or {})
        name = str(metadata.get("name") or path.stem)
        network = dict(header.get("network") or {})
        found.append((path.stat().st_mtime, SavedModel(path, name, metadata, network)))
    found.sort(key=lambda item: (-item[0], item[1].name))
    return [model for _, model in found]


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return slug[:80] or "model"


def save_to_folder(model: Any, name: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """Save ``model`` into the models folder under a file name made from ``name``.

    The name is stored in the model's metadata (``metadata["name"]``); an existing file is
    never replaced (``_2``, ``_3``... are appended).

    Parameters
    ----------
    model : SRModel
        The model.
    name : str
        Display name (e.g. the one it has in the session).
    folder : path-like, optional
        Default: :func:`models_folder` (created when missing).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    from .io import save_model

    folder = models_folder(create=True) if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = _slug(name)
    path = folder / f"{stem}.safetensors"
    n = 2
    while path.exists():
        path = folder / f"{stem}_{n}.safetensors"
        n += 1
    model.metadata = {**dict(model.metadata), "name": name}
    return Path(save_model(model, path))


def _number(value: Any, fmt: str) -> str | None:
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return None


def model_details(metadata: Mapping[str, Any], network: Mapping[str, Any] | None = None) -> str:
    """What made a model, in one line: preset, scale, fibre spacing, data, iterations.

    Parameters
    ----------
    metadata : mapping
        A model's metadata (``SRModel.metadata`` or the ``metadata`` of its file header).
    network : mapping, optional
        Its network settings (``NetworkConfig`` as a dict), for the scale and sizes when the
        training settings are absent.

    Returns
    -------
    str
        e.g. ``"preset tiny, x1, fibres 2.63 px apart, trained on 'pCLE LR (TLI)'
        (256x256), target natural, 300 iterations, seed 0"`` (and ``"fine-tuned from NAME"``
        for a model that started from another); parts that are unknown are left out.

    Examples
    --------
    >>> model_details({"train_config": {"preset": "tiny", "scale": 2, "target": "natural"},
    ...                "iteration": 40, "fibre_spacing": 2.6})
    'preset tiny, x2, fibres 2.60 px apart, target natural, 40 iterations'
    >>> model_details({"train_config": {"preset": "tiny"}, "initialised_from": "default"})
    'preset tiny, fine-tuned from default'
    """
    config = dict(metadata.get("train_config") or {})
    network = dict(network or {})
    parts: list[str] = []
    preset = config.get("preset")
    if preset:
        parts.append(f"preset {preset}")
    elif network.get("channels"):
        parts.append(f"{network.get('channels')} channels, {network.get('blocks')} blocks")
    scale = config.get("scale", network.get("scale"))
    if scale:
        parts.append(f"x{int(scale)}")
    spacing = _number(metadata.get("fibre_spacing"), ".2f")
    if spacing is not None:
        parts.append(f"fibres {spacing} px apart")
    data = metadata.get("training_data")
    if data:
        items = [str(item) for item in (data if isinstance(data, list | tuple) else [data])]
        shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
        parts.append(f"trained on {shown}")
    if config.get("target"):
        parts.append(f"target {config['target']}")
    iterations = metadata.get("iteration")
    if isinstance(iterations, int | float):
        parts.append(f"{int(iterations)} iterations")
    if "seed" in metadata:
        parts.append(f"seed {metadata['seed']}")
    if metadata.get("initialised_from"):
        parts.append(f"fine-tuned from {metadata['initialised_from']}")
    return ", ".join(parts) if parts else "no details recorded"
