"""Running core calls from the widgets: one job at a time, with progress, cancel and cleanup.

A button handler validates its input on the main thread (``guarded`` turns bad input into a
napari error notification before any work starts), then hands the work to its widget's
:class:`Runner`: a napari thread worker whose steps (:class:`Step`) move the widget's progress
bar and napari's activity bar, that **Cancel** stops at the next step, and that is stopped
cleanly when its dock is closed or the viewer goes away (its callbacks then touch no deleted
Qt object). A runner holds one job at a time, and a widget kind (e.g. "Train") runs one job per
viewer at a time, even across a closed and reopened dock.
"""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QEvent, QObject

__all__ = ["Runner", "Step", "WorkerFailure", "guarded", "run_in_thread", "warn"]

_LOG = logging.getLogger("napari_cycsr")


def warn(message: str) -> None:
    """Show a warning notification (a mismatch the user should know about)."""
    show_warning(message)


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


@dataclass
class Step:
    """Progress of a job: ``done`` of ``total`` steps (``total`` 0: unknown), and a text."""

    done: int
    total: int
    text: str = ""


@dataclass
class _Final:
    """The last event of a job: its result (or a WorkerFailure)."""

    value: Any


def _guarded_target(func: Callable[..., Any], where: str) -> Callable[..., Any]:
    """``func`` as a generator function whose exception becomes a returned WorkerFailure."""

    def _gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            if inspect.isgeneratorfunction(func):
                return (yield from func(*args, **kwargs))
            return func(*args, **kwargs)
        except Exception as exc:  # reported on the main thread
            _LOG.debug("%s failed:\n%s", where, traceback.format_exc())
            return WorkerFailure(exc, where)

    return _gen


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
    worker = create_worker(_guarded_target(func, where), *args, _start_thread=False, **kwargs)

    def _returned(value: Any) -> None:
        if isinstance(value, WorkerFailure):
            show_error(value.message)
            if on_error is not None:
                on_error(value)
        elif on_return is not None:
            on_return(value)

    if on_yield is not None:
        worker.yielded.connect(on_yield)
    worker.returned.connect(_returned)
    if on_finish is not None:
        worker.finished.connect(on_finish)
    worker.start()
    return worker


class _Lifetime(QObject):
    """Event filter: tells the runner when its widget leaves its dock (the dock was closed)."""

    def __init__(self, runner: Runner) -> None:
        super().__init__()
        self._runner = weakref.ref(runner)

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.ParentChange:
            runner = self._runner()
            try:
                detached = obj.parent() is None
            except RuntimeError:
                detached = True
            if runner is not None and detached and runner.had_parent:
                runner.closed("its panel was closed")
            elif runner is not None and not detached:
                runner.had_parent = True
        return False


class Runner:
    """Runs a widget's jobs in napari thread workers, one at a time.

    Parameters
    ----------
    widget : magicgui Container
        The widget (its ``root_native_widget`` is watched for being closed or deleted).
    viewer : napari.viewer.Viewer
        The viewer (one job per widget kind and viewer).
    kind : str
        Widget kind, e.g. "Train": a reopened dock of the same kind cannot start a job while
        the closed one's job still runs.
    progress : magicgui ProgressBar, optional
        Moved by the jobs' :class:`Step` events.
    status : magicgui Label, optional
        Shows the steps' texts and the outcome ("finished", "cancelled", the error).
    busy_widgets : list, optional
        Disabled while a job runs (the buttons that start jobs).
    cancel_button : magicgui PushButton, optional
        Enabled while a job runs; clicking it cancels.
    """

    _active: dict[tuple[int, str], Runner] = {}

    def __init__(
        self,
        widget: Any,
        viewer: Any,
        kind: str,
        *,
        progress: Any = None,
        status: Any = None,
        busy_widgets: list[Any] | None = None,
        cancel_button: Any = None,
    ) -> None:
        # napari hands each plugin widget its own proxy of the viewer: key on the viewer itself
        self._viewer_id = id(getattr(viewer, "__wrapped__", viewer))
        self.kind = kind
        self.progress = progress
        self.status = status
        self.busy_widgets = list(busy_widgets or [])
        self.cancel_button = cancel_button
        self.worker: Any = None
        self.alive = True
        self.had_parent = False
        self.cancelled = False
        self._cancel_hook: Callable[[], None] | None = None
        self._napari_bar: Any = None
        self._where = ""
        root = widget.root_native_widget
        self._lifetime = _Lifetime(self)
        root.installEventFilter(self._lifetime)
        ref = weakref.ref(self)
        root.destroyed.connect(lambda *_: (r := ref()) is not None and r.closed("it was deleted"))
        if cancel_button is not None:
            cancel_button.enabled = False
            cancel_button.changed.connect(lambda *_: self.cancel())

    # -- state -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a job runs."""
        return self.worker is not None

    def _key(self) -> tuple[int, str]:
        return (self._viewer_id, self.kind)

    def check_free(self) -> None:
        """Raise ValueError when a job of this kind already runs in this viewer."""
        other = Runner._active.get(self._key())
        if other is self and self.busy:
            raise ValueError(f"a {self.kind} job is already running; cancel it or wait")
        if other is not None and other is not self and other.busy:
            raise ValueError(
                f"another {self.kind} job of this viewer is still running or still stopping "
                f"(its {self.kind} panel may have been closed); wait for it and try again"
            )

    # -- the UI, touched only while the widget lives -------------------------------------------
    def say(self, text: str) -> None:
        """Show ``text`` in the status line (nothing once the widget is gone)."""
        if self.alive and self.status is not None:
            try:
                self.status.value = text
            except RuntimeError:
                self.alive = False

    def _set_busy(self, busy: bool) -> None:
        if not self.alive:
            return
        try:
            for widget in self.busy_widgets:
                widget.enabled = not busy
            if self.cancel_button is not None:
                self.cancel_button.enabled = busy
        except RuntimeError:
            self.alive = False

    def _show_step(self, step: Step) -> None:
        if self.alive:
            try:
                if self.progress is not None:
                    self.progress.max = max(int(step.total), 0)  # 0: busy indicator
                    self.progress.value = min(int(step.done), max(int(step.total), 0))
                if step.text:
                    self.say(step.text)
            except RuntimeError:
                self.alive = False
        # napari's bar last: updating it may process pending events (even this job's end)
        if self._napari_bar is not None:
            try:
                if step.total and self._napari_bar.total != step.total:
                    self._napari_bar.total = step.total
                self._napari_bar.update(max(step.done - self._napari_bar.n, 0))
                if step.text:
                    self._napari_bar.set_description(f"{self._where}: {step.text}")
            except Exception:  # napari's bar is a nicety; never break the job for it
                self._napari_bar = None

    # -- jobs -------------------------------------------------------------------------------
    def start(
        self,
        func: Callable[..., Any],
        *args: Any,
        where: str,
        on_yield: Callable[[Any], None] | None = None,
        on_return: Callable[[Any], None] | None = None,
        on_error: Callable[[WorkerFailure], None] | None = None,
        on_finish: Callable[[], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
        cancel: Callable[[], None] | None = None,
        total: int = 0,
        **kwargs: Any,
    ) -> Any:
        """Run ``func`` (a generator function yielding :class:`Step` or other events).

        ``on_yield`` gets the events that are not Steps; ``on_return`` the result of a job
        that finished; ``on_cancel`` runs instead when the job was cancelled (and had no
        ``cancel`` hook, or that hook made it end early); ``cancel`` is how to ask the job to
        stop (default: stop at its next yield); ``on_finish`` runs last in every case. The
        callbacks run on the main thread, in the order the job produced its events, and never
        after the widget is gone.
        """
        self.check_free()
        self.cancelled = False
        self._cancel_hook = cancel
        self._where = where
        self._set_busy(True)
        self._show_step(Step(0, total, f"{where}..."))
        try:
            from napari.utils import progress as napari_progress

            self._napari_bar = napari_progress(total=total, desc=where)
        except Exception:  # pragma: no cover - napari's bar is optional
            self._napari_bar = None
        ended = [False]

        def _end(outcome: str, value: Any = None) -> None:
            # every way a job ends comes here once: its result, its error, or its cancel
            if ended[0]:
                return
            ended[0] = True
            if self._napari_bar is not None:
                try:
                    self._napari_bar.close()
                except Exception:  # pragma: no cover
                    pass
                self._napari_bar = None
            if Runner._active.get(self._key()) is self:
                del Runner._active[self._key()]
            if self.alive:
                if outcome == "failed":
                    show_error(value.message)
                    self.say(value.message)
                    if on_error is not None:
                        self._guard(on_error, value)
                elif outcome == "cancelled" or (self.cancelled and on_cancel is not None):
                    self._cancelled(on_cancel)
                elif on_return is not None:
                    self._guard(on_return, value)
            self.worker = None
            self._set_busy(False)
            if on_finish is not None and self.alive:
                self._guard(on_finish)

        def _yield(event: Any) -> None:
            if ended[0]:
                return
            if isinstance(event, _Final):
                failed = isinstance(event.value, WorkerFailure)
                _end("failed" if failed else "returned", event.value)
            elif isinstance(event, Step):
                self._show_step(event)
            elif on_yield is not None and self.alive:
                self._guard(on_yield, event)

        target = _guarded_target(func, where)

        def _job(*a: Any, **k: Any) -> Iterator[Any]:
            value = yield from target(*a, **k)
            yield _Final(value)

        worker = create_worker(_job, *args, _start_thread=False, **kwargs)
        worker.yielded.connect(_yield)
        worker.aborted.connect(lambda: _end("cancelled"))
        # a job that ends without its final event (an interpreter shutdown) still frees the UI
        worker.finished.connect(lambda: _end("cancelled") if not ended[0] and self.cancelled
                                else None)  # fmt: skip
        self.worker = worker
        Runner._active[self._key()] = self
        worker.start()
        return worker

    def _cancelled(self, on_cancel: Callable[[], None] | None) -> None:
        self.say("cancelled")
        if on_cancel is not None:
            self._guard(on_cancel)

    def _guard(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except RuntimeError as err:
            if "deleted" not in str(err):
                raise
            self.alive = False

    def cancel(self) -> None:
        """Ask the running job to stop (at its next step); nothing is added."""
        if self.worker is None:
            return
        self.cancelled = True
        self.say("cancelling (the current step finishes first)...")
        if self._cancel_hook is not None:
            self._cancel_hook()
        else:
            self.worker.quit()

    def closed(self, why: str) -> None:
        """The widget was closed or deleted: stop the job; touch no Qt object afterwards."""
        if why == "it was deleted":
            self.alive = False
        if self.worker is not None:
            _LOG.info("stopping the %s job: %s", self.kind, why)
            self.cancel()
