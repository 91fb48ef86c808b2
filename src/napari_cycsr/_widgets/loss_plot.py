"""A live, theme-aware plot of the training losses (matplotlib in a Qt canvas)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

__all__ = ["LOSS_KEYS", "LossPlot"]

#: Losses drawn, in legend order (the keys of TrainEvent.losses).
LOSS_KEYS: tuple[str, ...] = ("l_vec", "l_adv", "l_reg", "loss_d")


class LossPlot(FigureCanvasQTAgg):
    """Loss curves against iteration, redrawn at most every ``min_interval`` seconds.

    Parameters
    ----------
    theme : str
        napari theme name (``viewer.theme``) whose colours the axes follow.
    keys : sequence of str
        Loss names to draw.
    min_interval : float
        Minimum seconds between two redraws (a redraw blocks the main thread for tens of
        milliseconds); appending stays cheap however fast training runs.
    """

    def __init__(
        self, theme: str = "dark", keys: Sequence[str] = LOSS_KEYS, min_interval: float = 1.0
    ) -> None:
        # a fixed layout: constrained layout doubles the cost of every redraw
        self.figure = Figure(figsize=(4, 2.6))
        self.figure.subplots_adjust(left=0.16, right=0.97, top=0.95, bottom=0.2)
        super().__init__(self.figure)
        self.setMinimumHeight(180)
        self.keys = tuple(keys)
        self.min_interval = float(min_interval)
        self.iterations: list[int] = []
        self.values: dict[str, list[float]] = {k: [] for k in self.keys}
        self._last_draw = 0.0
        self.axes = self.figure.add_subplot()
        self.lines = {k: self.axes.plot([], [], label=k, linewidth=1.2)[0] for k in self.keys}
        self.axes.set_xlabel("iteration")
        self.axes.set_ylabel("loss")
        self.axes.set_yscale("log")
        self.legend = self.axes.legend(loc="upper right", fontsize="small", frameon=False)
        self.apply_theme(theme)

    def apply_theme(self, theme: str) -> None:
        """Colour figure, axes, ticks and legend text like the napari theme ``theme``."""
        from napari.utils.theme import get_theme

        colours = get_theme(theme)
        background = colours.background.as_hex()
        foreground = colours.text.as_hex()
        self.figure.set_facecolor(background)
        self.axes.set_facecolor(colours.canvas.as_hex())
        for spine in self.axes.spines.values():
            spine.set_color(foreground)
        self.axes.tick_params(colors=foreground, which="both")
        self.axes.xaxis.label.set_color(foreground)
        self.axes.yaxis.label.set_color(foreground)
        for text in self.legend.get_texts():
            text.set_color(foreground)
        self.draw_idle()

    def clear(self) -> None:
        """Forget every point."""
        self.iterations.clear()
        for values in self.values.values():
            values.clear()
        self.refresh(force=True)

    def append(self, iteration: int, losses: Mapping[str, float]) -> None:
        """Add one iteration's losses (missing or non-positive ones are skipped on log axes)."""
        self.iterations.append(int(iteration))
        for key in self.keys:
            value = float(losses.get(key, math.nan))
            self.values[key].append(value if value > 0 else math.nan)
        self.refresh()

    def refresh(self, force: bool = False) -> bool:
        """Redraw if ``min_interval`` passed since the last redraw (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval:
            return False
        self._last_draw = now
        for key, line in self.lines.items():
            line.set_data(self.iterations, self.values[key])
        if self.iterations:
            self.axes.relim()
            self.axes.autoscale_view()
        self.draw_idle()
        return True
