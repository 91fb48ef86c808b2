"""A live, theme-aware plot of the training losses (matplotlib in a Qt canvas)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ._plots import theme_axes

__all__ = ["LOSS_KEYS", "LossPlot"]

#: Losses that can be drawn, in legend order (the keys of TrainEvent.losses). A run reports
#: only its own terms (``l_multi`` only with the multi-frame consistency, ``l_pix`` only with
#: a pixel loss, ``l_anchor`` only in a fine-tuning held to its initial model), and only the
#: curves it reports appear.
LOSS_KEYS: tuple[str, ...] = (
    "l_vec", "l_multi", "l_pix", "l_anchor", "l_adv", "l_reg", "loss_d",
)  # fmt: skip


class LossPlot(FigureCanvasQTAgg):
    """Loss curves against iteration on log axes, cheap to update while training runs.

    The x axis spans the whole run and the y axis whole decades, so most updates only redraw
    the curves over a cached background (blitting, a few milliseconds); the full figure is
    redrawn only when a value leaves the axes. Updates are at most one per ``min_interval``.

    Parameters
    ----------
    theme : str
        napari theme name (``viewer.theme``) whose colours the axes follow.
    keys : sequence of str
        Loss names that may be drawn; each gets its curve and legend entry once the run
        reports a positive value of it.
    min_interval : float
        Minimum seconds between two redraws.
    """

    def __init__(
        self, theme: str = "dark", keys: Sequence[str] = LOSS_KEYS, min_interval: float = 0.5
    ) -> None:
        # a fixed layout: constrained layout doubles the cost of every full redraw
        self.figure = Figure(figsize=(4, 2.6))
        self.figure.subplots_adjust(left=0.16, right=0.97, top=0.95, bottom=0.2)
        super().__init__(self.figure)
        self.setMinimumHeight(180)
        self.keys = tuple(keys)
        self.min_interval = float(min_interval)
        self.iterations: list[int] = []
        #: the values of every loss the run reported, one per iteration (NaN: not drawable)
        self.values: dict[str, list[float]] = {}
        #: the curves drawn so far (the losses with a positive value), in legend order
        self.lines: dict[str, Any] = {}
        self.legend: Any = None
        self.total = 1
        self.full_draws = 0
        self.theme = theme
        self._last_draw = 0.0
        self._background: Any = None
        self._new_lines = False
        self.axes = self.figure.add_subplot()
        self.axes.set_xlabel("iteration")
        self.axes.set_ylabel("loss")
        self.axes.set_yscale("log")
        self.axes.set_xlim(0, 1)
        self.axes.set_ylim(1e-3, 1e1)
        self.mpl_connect("draw_event", self._on_draw)
        self.apply_theme(theme)

    def apply_theme(self, theme: str) -> None:
        """Colour figure, axes, ticks and legend text like the napari theme ``theme``."""
        self.theme = theme
        theme_axes(self.figure, self.axes, theme, self.legend)
        self.draw_idle()

    def clear(self, total: int = 1) -> None:
        """Forget every point and curve; the x axis will span ``total`` iterations."""
        self.iterations.clear()
        self.values.clear()
        for line in self.lines.values():
            line.remove()
        self.lines.clear()
        self._update_legend()
        self.total = max(int(total), 1)
        self.refresh(force=True)

    def append(self, iteration: int, losses: Mapping[str, float], total: int | None = None) -> None:
        """Add one iteration's losses (missing or non-positive ones are not drawn)."""
        self.iterations.append(int(iteration))
        if total is not None:
            self.total = max(int(total), 1)
        for key in self.keys:
            if key not in losses and key not in self.values:
                continue  # a term this run does not have
            value = float(losses.get(key, math.nan))
            value = value if value > 0 else math.nan
            values = self.values.setdefault(key, [math.nan] * (len(self.iterations) - 1))
            values.append(value)
            if key not in self.lines and not math.isnan(value):
                self._add_line(key)
        self.refresh(force=self._new_lines)

    def _add_line(self, key: str) -> None:
        colour = f"C{self.keys.index(key)}"  # one colour per loss, whatever the run has
        (line,) = self.axes.plot(
            [], [], label=key, color=colour, linewidth=1.2, animated=True
        )  # fmt: skip
        order = [k for k in self.keys if k in self.lines or k == key]
        self.lines[key] = line
        self.lines = {k: self.lines[k] for k in order}
        self._new_lines = True
        self._update_legend()

    def _update_legend(self) -> None:
        if self.legend is not None:
            self.legend.remove()
            self.legend = None
        if self.lines:
            lines = list(self.lines.values())
            self.legend = self.axes.legend(
                lines, list(self.lines), loc="upper right", fontsize="small", frameon=False
            )
            theme_axes(self.figure, self.axes, self.theme, self.legend)

    def refresh(self, force: bool = False) -> bool:
        """Redraw if ``min_interval`` passed since the last redraw (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval:
            return False
        self._last_draw = now
        self._new_lines = False
        for key, line in self.lines.items():
            line.set_data(self.iterations, self.values[key])
        if self._update_limits() or self._background is None or force:
            self.full_draws += 1
            self.draw()  # _on_draw draws the curves over the fresh background
        else:
            self.restore_region(self._background)
            self._draw_curves()
            self._schedule_paint(self.axes.bbox)
        return True

    def _update_limits(self) -> bool:
        """Widen the axes to the run length and whole decades; True if they changed."""
        xlim = (0.0, float(max(self.total, self.iterations[-1] if self.iterations else 1)))
        ylim = self.axes.get_ylim()
        data = np.array([v for vals in self.values.values() for v in vals], dtype=float)
        data = data[np.isfinite(data)]
        if data.size:
            low, high = float(data.min()), float(data.max())
            if low < ylim[0] or high > ylim[1]:
                ylim = (
                    min(ylim[0], 10 ** math.floor(math.log10(low))),
                    max(ylim[1], 10 ** math.ceil(math.log10(high))),
                )
        changed = xlim != tuple(self.axes.get_xlim()) or ylim != tuple(self.axes.get_ylim())
        if changed:
            self.axes.set_xlim(*xlim)
            self.axes.set_ylim(*ylim)
        return changed

    def _schedule_paint(self, bbox: Any) -> None:
        """Like ``blit`` but asynchronous: Qt merges the paint with the widget's other updates.

        ``blit`` repaints at once; in a window holding napari's OpenGL canvas every repaint
        recomposes the whole window, so merging paints halves the main thread's work.
        """
        left, bottom, width, height = (int(v / self.device_pixel_ratio) for v in bbox.bounds)
        self.update(left, self.rect().height() - bottom - height, width, height)

    def _draw_curves(self) -> None:
        for line in self.lines.values():
            self.axes.draw_artist(line)

    def _on_draw(self, _event: Any) -> None:
        self._background = self.copy_from_bbox(self.axes.bbox)
        self._draw_curves()
