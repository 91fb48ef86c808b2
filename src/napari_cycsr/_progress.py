"""Progress bars for long library calls run from a script, a notebook or napari's console.

:func:`progress_bar` returns a tqdm-style bar. Inside a running napari session (napari already
imported by the user and a viewer open) it is napari's own ``napari.utils.progress``, shown in
the viewer's activity dock; elsewhere a plain ``tqdm`` bar on stderr. This module never imports
napari itself (the library stays headless): it only reuses napari when the user already has it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["in_napari", "progress_bar"]


def in_napari() -> bool:
    """True when napari is already imported in this process and a viewer is open."""
    if "napari" not in sys.modules:
        return False
    try:
        viewer_module = importlib.import_module("napari.viewer")
        return viewer_module.current_viewer() is not None
    except Exception:  # an incomplete or headless napari: behave as outside it
        return False


def progress_bar(total: int, desc: str, *, unit: str = "it", disable: bool = False) -> Any:
    """A progress bar of ``total`` steps (``update``, ``set_postfix``, ``close``).

    Parameters
    ----------
    total : int
        Number of steps.
    desc : str
        Short label shown before the bar.
    unit : str
        Name of one step.
    disable : bool
        Return a bar that shows nothing.

    Returns
    -------
    tqdm.tqdm
        ``napari.utils.progress`` inside a napari session, else ``tqdm.tqdm`` on stderr.
    """
    if not disable and in_napari():
        progress = importlib.import_module("napari.utils").progress
        return progress(total=total, desc=desc, unit=unit)
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=disable, file=sys.stderr
    )
