"""Progress bars for long library calls run from a script, a notebook or napari's console.

:func:`progress_bar` returns a tqdm-style bar. Inside a running napari session (napari already
imported by the user and a viewer open) it is napari's own ``napari.utils.progress``, shown in
the viewer's activity dock; elsewhere a plain ``tqdm`` bar on stderr. This module never imports
napari itself (the library stays headless): it only reuses napari when the user already has it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Generator, Iterator
from typing import Any

__all__ = ["drain", "in_napari", "progress_bar", "relay"]


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


def drain(gen: Iterator[Any], callback: Callable[[Any], Any] | None = None) -> Any:
    """Run a generator of progress events to its end and return its value (the library's
    long work is such a generator); each event goes to ``callback`` when given.

    Examples
    --------
    >>> def work():
    ...     yield 1
    ...     yield 2
    ...     return "done"
    >>> seen = []
    >>> drain(work(), seen.append), seen
    ('done', [1, 2])
    """
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)


def relay(gen: Iterator[Any], convert: Callable[[Any], Any]) -> Generator[Any, None, Any]:
    """Yield ``convert(event)`` for every event of ``gen`` and return ``gen``'s value:
    ``result = yield from relay(work, to_step)`` turns one kind of progress into another.

    Examples
    --------
    >>> def work():
    ...     yield 1
    ...     return "done"
    >>> steps = relay(work(), lambda e: e * 10)
    >>> next(steps), drain(steps)
    (10, 'done')
    """
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        yield convert(event)
