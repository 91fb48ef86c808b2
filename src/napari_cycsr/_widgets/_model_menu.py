"""The model menus of the widgets: session models, saved models, pretrained ones, a file.

The Super-resolve widget's "model" and the Train widget's "start from" list the same models
the same way; this module builds their entries and turns an entry into a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_cycsr.models_store import saved_models

from ._common import MODELS

__all__ = ["FROM_FILE", "PRETRAINED", "choice_label", "load_choice", "model_choices"]

#: Choice of a model menu meaning "load the model file below".
FROM_FILE = "<model file>"
#: Prefix of a model menu's entries for the pretrained models that ship with the package.
PRETRAINED = "pretrained: "


def model_choices() -> list[tuple[str, Any]]:
    """Menu entries ``(label, value)``: this session's models (value: the name), the models
    folder's (value: the path), the pretrained ones and :data:`FROM_FILE`."""
    from napari_cycsr._pretrained import list_pretrained

    session = [(name, name) for name in MODELS.names()]
    saved = [(f"{m.name} [saved: {m.path.name}]", m.path) for m in saved_models()]
    shipped = [(PRETRAINED + m["name"],) * 2 for m in list_pretrained()]
    return [*session, *saved, *shipped, (FROM_FILE, FROM_FILE)]


def choice_label(choice: Any, path: Path | None = None) -> str:
    """A short name of a menu choice: the session name, the pretrained name, a file's stem."""
    if isinstance(choice, Path):
        return choice.stem
    if choice == FROM_FILE and path is not None:
        return Path(path).stem
    return str(choice).removeprefix(PRETRAINED)


def load_choice(choice: Any, path: Path | None = None) -> Any:
    """The :class:`~napari_cycsr.models.SRModel` of a menu choice (``path``: the file chosen
    for :data:`FROM_FILE`); loading a file never runs code from it."""
    if isinstance(choice, str) and choice.startswith(PRETRAINED):
        from napari_cycsr._pretrained import pretrained

        return pretrained(choice[len(PRETRAINED) :])
    if isinstance(choice, Path) or choice == FROM_FILE:
        from napari_cycsr.io import load_model

        return load_model(choice if isinstance(choice, Path) else path)
    return MODELS.get(choice)
