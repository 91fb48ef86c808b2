"""Running core calls from the widgets: thread workers and error messages.

A button handler validates its input on the main thread (``guarded`` turns bad input into a
napari error notification), then hands the core call to ``run_in_thread``: the viewer stays
responsive and an exception in the thread becomes a clear notification, never a crash.
"""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error

__all__ = ["WorkerFailure", "guarded", "run_in_thread"]

_LOG = logging.getLogger("napari_cycsr")


def guarded(where: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a button handler: bad input shows ``"<where>: <message>"`` instead of raising.

    Only input errors (ValueError, TypeError, KeyError, OSError) are caught; the handler
    must not have changed any layer before raising them.
    """

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except (ValueError, TypeError, KeyError, OSError) as exc:
                message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                show_error(f"{where}: {message}")
                return None

        return wrapper

    return decorate


@dataclass
class WorkerFailure:
    """What a worker returns instead of raising: the error and a one-line summary."""

    error: BaseException
    where: str

    @property
    def message(self) -> str:
        return f"{self.where} failed: {self.error}"


def run_in_thread(
    func: Callable[..., Any],
    *args: Any,
    where: str,
    on_yield: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], None] | None = None,
    on_error: Callable[[WorkerFailure], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``func(*args, **kwargs)`` in a napari thread worker and return the started worker.

    A generator function's values go to ``on_yield`` (on the main thread). An exception in
    the thread does not escape: it is logged, shown as a napari error notification whose
    message starts with ``where``, and passed to ``on_error``; ``on_finish`` always runs last.
    """

    def _guard_call() -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # reported on the main thread
            _LOG.debug("%s failed:\n%s", where, traceback.format_exc())
            return WorkerFailure(exc, where)

    def _guard_gen() -> Iterator[Any]:
        try:
            return (yield from func(*args, **kwargs))
        except Exception as exc:
            _LOG.debug("%s failed:\n%s", where, traceback.format_exc())
            return WorkerFailure(exc, where)

    target = _guard_gen if inspect.isgeneratorfunction(func) else _guard_call
    worker = create_worker(target, _start_thread=False)

    def _returned(value: Any) -> None:
        if isinstance(value, WorkerFailure):
            show_error(value.message)
            if on_error is not None:
                on_error(value)
        elif on_return is not None:
            on_return(value)

    if on_yield is not None and hasattr(worker, "yielded"):
        worker.yielded.connect(on_yield)
    worker.returned.connect(_returned)
    if on_finish is not None:
        worker.finished.connect(on_finish)
    worker.start()
    return worker
