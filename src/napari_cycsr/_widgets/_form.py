"""The frame every napari-cycsr widget is built in: a vertical form inside a scroll area.

napari docks a widget at its full height; four forms of 15-30 controls each would make the
window taller than a laptop screen. :class:`Form` puts the controls in a scroll area, so a dock
can be as short as the screen allows (the controls scroll) and grows when there is room.

magicgui sizes the label column from the application's default font, before napari's style
sheet (a larger font) reaches the labels; the widest label then needs more room than its
column, pushes its own control to the right and is cut off when the dock is narrow. A form
measures its labels again, in the font they are drawn with, whenever it is shown or restyled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from magicgui.widgets import Container, Widget
from qtpy.QtCore import QEvent, QObject

__all__ = ["Form", "align_labels", "aligned", "controls"]

#: Lowest height a dock asks for; the rest scrolls.
MIN_HEIGHT = 60


class Form(Container):
    """A magicgui Container whose native widget is a scroll area holding the controls.

    Use it like a Container (``extend``, attributes for the controls); add plain Qt widgets
    (plots, tables) with :meth:`add_qt`, and call :meth:`finish` at the end of ``__init__``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(scrollable=True, **kwargs)
        scroll = self.root_native_widget
        scroll._magic_widget = self  # napari's dock finds the magicgui widget through this
        scroll.setMinimumHeight(MIN_HEIGHT)
        self._body = super().native
        self._aligner = _LabelAligner(self, self._body)
        self._body.installEventFilter(self._aligner)

    @property
    def native(self) -> Any:
        """The scroll area (what napari docks)."""
        return self.root_native_widget

    @property
    def body(self) -> Any:
        """The QWidget inside the scroll area, holding the controls."""
        return self._body

    def add_qt(self, widget: Any, index: int | None = None) -> None:
        """Add a plain Qt widget to the form (at ``index`` of the layout, default last)."""
        layout = self._body.layout()
        if index is None:
            layout.addWidget(widget)
        else:
            layout.insertWidget(index, widget)

    def layout_index(self, control: Widget) -> int:
        """Position in the form's layout of a magicgui control (or of its labelled row)."""
        layout = self._body.layout()
        for i in range(layout.count()):
            item = layout.itemAt(i).widget()
            if item is not None and (item is control.native or item.isAncestorOf(control.native)):
                return i
        raise ValueError(f"{control!r} is not in this form")

    def finish(self) -> None:
        """End of construction: narrow-able menus and texts; extra height below the controls.

        A menu is as wide as its longest entry by default, and magicgui fixes a text's width
        to its one-line length: one long layer name or status would make the whole dock wider
        than the screen's side panel. Menus shrink to a few characters (the full name shows
        when the menu opens), word-wrapped texts wrap, and a horizontal scroll bar appears only
        if the form still does not fit. Call it after the wrapped labels are set up.
        """
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QComboBox, QLabel, QSizePolicy

        for label in self._body.findChildren(QLabel):
            if label.wordWrap():  # magicgui fixes a label's width to its one-line text
                label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        for combo in self._body.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(12)
        self.native.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.native.setMinimumWidth(0)
        self._body.layout().addStretch(1)


class _LabelAligner(QObject):
    """Re-measures a container's label columns when it is shown, restyled or given a font."""

    EVENTS = (QEvent.Type.Show, QEvent.Type.StyleChange, QEvent.Type.FontChange)

    def __init__(self, container: Container, parent: Any) -> None:
        super().__init__(parent)
        self._container = container

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 (Qt's name)
        if event.type() in self.EVENTS:
            align_labels(self._container)
        return False


def aligned(container: Container) -> Container:
    """``container`` with its label columns kept aligned (:func:`align_labels`) whenever it is
    shown: for containers placed in a form with :meth:`Form.add_qt` (e.g. a collapsible
    section), which the form's own alignment does not reach."""
    widget = container.native
    widget._cycsr_aligner = _LabelAligner(container, widget)  # kept alive with the widget
    widget.installEventFilter(widget._cycsr_aligner)
    return container


def _containers(container: Container) -> Iterator[Container]:
    yield container
    for widget in container:
        if isinstance(widget, Container):
            yield from _containers(widget)


def align_labels(container: Container) -> None:
    """Make each label column of ``container`` (and its sub-containers) as wide as its widest
    label drawn in the label's own font, so that every control of a column starts at the same
    x and no label is cut off (magicgui measures with the application's default font)."""
    for box in _containers(container):
        rows = [w._labeled_widget() for w in box]
        labels = [row._label_widget.native for row in rows if row is not None]
        if box.layout != "vertical" or not box.labels or not labels:
            continue
        for label in labels:
            label.ensurePolished()
        widest = max(label.sizeHint().width() for label in labels)
        for label in labels:
            if label.minimumWidth() != widest:
                label.setMinimumWidth(widest)


def controls(container: Container) -> Iterator[Widget]:
    """Every magicgui control of a container and its sub-containers (not the containers)."""
    for widget in container:
        if isinstance(widget, Container):
            yield from controls(widget)
        else:
            yield widget
