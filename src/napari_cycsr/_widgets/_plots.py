"""Small matplotlib canvases for the widgets, coloured like the napari theme."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

__all__ = ["MetricPlot", "theme_axes"]


def theme_axes(figure: Figure, axes: Any, theme: str, legend: Any = None) -> None:
    """Colour a figure, its axes, ticks, labels and legend text like the napari ``theme``."""
    from napari.utils.theme import get_theme

    colours = get_theme(theme)
    foreground = colours.text.as_hex()
    figure.set_facecolor(colours.background.as_hex())
    axes.set_facecolor(colours.canvas.as_hex())
    for spine in axes.spines.values():
        spine.set_color(foreground)
    axes.tick_params(colors=foreground, which="both")
    axes.xaxis.label.set_color(foreground)
    axes.yaxis.label.set_color(foreground)
    axes.title.set_color(foreground)
    if legend is not None:
        for text in legend.get_texts():
            text.set_color(foreground)
        legend.get_frame().set_facecolor(colours.canvas.as_hex())
        legend.get_frame().set_edgecolor(foreground)


class MetricPlot(FigureCanvasQTAgg):
    """One metric per method: bars for a single frame, curves against the frame for a stack.

    Parameters
    ----------
    theme : str
        napari theme name.
    """

    def __init__(self, theme: str = "dark") -> None:
        self.figure = Figure(figsize=(4, 2.4), layout="constrained")
        super().__init__(self.figure)
        self.setMinimumHeight(170)
        self.theme = theme
        self.axes = self.figure.add_subplot()
        self.series: dict[str, list[float]] = {}
        self.metric = ""
        theme_axes(self.figure, self.axes, theme)

    def apply_theme(self, theme: str) -> None:
        self.theme = theme
        self.show(self.series, self.metric)

    def show(self, series: Mapping[str, Sequence[float]], metric: str) -> None:
        """Draw ``series`` (method -> one value per frame) of ``metric``."""
        self.series = {k: [float(v) for v in vals] for k, vals in series.items()}
        self.metric = metric
        ax = self.axes
        ax.clear()
        legend = None
        if self.series:
            frames = max(len(v) for v in self.series.values())
            if frames <= 1:
                names = list(self.series)
                values = [v[0] if v else math.nan for v in self.series.values()]
                bars = ax.bar(range(len(names)), values, color=[f"C{i}" for i in range(len(names))])
                ax.set_xticks(range(len(names)), [_short(n) for n in names], fontsize="small")
                ax.bar_label(bars, fmt="%.3g", fontsize="small")
                ax.margins(y=0.15)  # room for the labels above the bars
            else:
                for name, values in self.series.items():
                    ax.plot(np.arange(len(values)), values, marker=".", label=_short(name))
                ax.set_xlabel("frame")
                legend = ax.legend(fontsize="small", frameon=False)
        ax.set_ylabel(metric)
        theme_axes(self.figure, ax, self.theme, legend)
        self.draw_idle()


def _short(name: str, limit: int = 22) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
