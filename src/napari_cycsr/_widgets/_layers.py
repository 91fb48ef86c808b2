"""Layers as the widgets see them: which layer a menu offers first, and their pixels as grey.

* :func:`layer_choices` lists the viewer's layers of one type for a magicgui menu;
  :func:`pick_layer` chooses the one to offer (the active layer, else the top visible one,
  never one another menu of the widget already holds); :class:`ActiveLayerFollower` keeps
  chosen menus on the layer the user selects in the layer list.
* :func:`layer_array` returns a layer's current frame or whole stack as a grey array: grey
  images as they are, RGB/RGBA images with equal channels as grey (the colour rule of
  :mod:`napari_cycsr._validate`), true colour refused with the fix; :func:`yx_shape` is the
  height and width of any image layer, RGB or not.
* :class:`GreyButton` is the one-click "Convert to grey" of true colour layers (a new layer;
  the original is untouched).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from magicgui.widgets import PushButton
from napari.layers import Image, Layer

from napari_cycsr._validate import as_grey, grey_if_equal_channels, luminance

__all__ = [
    "ActiveLayerFollower",
    "GreyButton",
    "is_true_colour",
    "layer_array",
    "layer_choices",
    "pick_layer",
    "require_layer",
    "yx_shape",
]


def layer_choices(viewer: Any, kind: type[Layer]) -> Callable[[Any], list[tuple[str, Layer]]]:
    """A magicgui ``choices`` callable listing the viewer's layers of one type."""

    def _choices(_widget: Any = None) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, kind)]

    return _choices


def pick_layer(
    viewer: Any,
    kind: type[Layer],
    *,
    avoid: Iterable[Layer | None] = (),
    accept: Callable[[Layer], bool] | None = None,
) -> Layer | None:
    """The layer of type ``kind`` a menu should offer first.

    The active layer of the layer list when it fits, else another selected one, else the
    top-most visible layer, else the top-most one; layers in ``avoid`` (held by another menu
    of the same widget) and those ``accept`` refuses come last or not at all.
    """
    avoided = {id(layer) for layer in avoid if layer is not None}

    def fits(layer: Any) -> bool:
        return (
            isinstance(layer, kind)
            and id(layer) not in avoided
            and (accept is None or bool(accept(layer)))
        )

    active = viewer.layers.selection.active
    if fits(active):
        return active
    selected = [layer for layer in viewer.layers.selection if fits(layer)]
    if selected:
        return selected[-1]
    candidates = [layer for layer in reversed(viewer.layers) if fits(layer)]
    visible = [layer for layer in candidates if layer.visible]
    if visible:
        return visible[0]
    return candidates[0] if candidates else None


class ActiveLayerFollower:
    """Keeps menus on the layer the user makes active in the layer list, and sane otherwise.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    menus : list of (ComboBox, layer type, follow)
        Each menu with the layer type it lists; ``follow`` True makes it take the active
        layer whenever that is of its type (the widget's main input).

    Notes
    -----
    After the viewer's layers change, a menu whose layer is gone or that holds the same layer
    as another menu is re-picked with :func:`pick_layer`. While :attr:`paused` (the widget
    adds its own result layers), the active layer is not followed.
    """

    def __init__(self, viewer: Any, menus: Sequence[tuple[Any, type[Layer], bool]]) -> None:
        self._viewer = viewer
        self.menus = list(menus)
        self.paused = 0
        self._connected = True
        viewer.layers.selection.events.active.connect(self._on_active)
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        self.refresh(initial=True)

    def disconnect(self) -> None:
        """Stop listening to the viewer (the widget is gone)."""
        if not self._connected:
            return
        self._connected = False
        layers = self._viewer.layers
        for emitter, callback in (
            (layers.selection.events.active, self._on_active),
            (layers.events.inserted, self._on_layers_changed),
            (layers.events.removed, self._on_layers_changed),
        ):
            try:
                emitter.disconnect(callback)
            except (RuntimeError, ValueError, TypeError):
                pass

    def _others(self, menu: Any) -> list[Any]:
        return [m.value for m, _, _ in self.menus if m is not menu and _has_value(m)]

    def refresh(self, initial: bool = False) -> None:
        """Re-pick every menu that is empty, holds a removed layer or repeats an earlier menu.

        With ``initial`` every required menu is picked afresh; optional (nullable) menus are
        left as they are (the user's "none" is a choice).
        """
        earlier: list[Any] = []
        for menu, kind, _follow in self.menus:
            current = menu.value if _has_value(menu) else None
            if _nullable(menu):
                if current is not None:
                    earlier.append(current)
                continue
            duplicate = current is not None and any(o is current for o in earlier)
            gone = current is not None and current not in self._viewer.layers
            if initial or current is None or gone or duplicate:
                layer = pick_layer(self._viewer, kind, avoid=earlier)
                if layer is not None or gone:
                    _set(menu, layer)
            if _has_value(menu):
                earlier.append(menu.value)

    def _on_layers_changed(self, _event: Any = None) -> None:
        try:
            for menu, _kind, _follow in self.menus:
                menu.reset_choices()
            self.refresh()
        except RuntimeError:  # the Qt widgets are gone
            self.disconnect()

    def _on_active(self, event: Any) -> None:
        if self.paused:
            return
        layer = getattr(event, "value", None)
        if layer is None:
            return
        try:
            for menu, kind, follow in self.menus:
                if not follow or not isinstance(layer, kind):
                    continue
                previous = menu.value if _has_value(menu) else None
                if previous is layer:
                    continue
                _set(menu, layer)
                # a second menu that held this layer takes the first one's old layer
                for other, other_kind, _ in self.menus:
                    if other is not menu and _has_value(other) and other.value is layer:
                        if previous is not None and isinstance(previous, other_kind):
                            _set(other, previous)
                        else:
                            _set(other, pick_layer(self._viewer, other_kind, avoid=[layer]))
        except RuntimeError:
            self.disconnect()


def _nullable(menu: Any) -> bool:
    """Whether a magicgui menu offers "none" (an optional input)."""
    return bool(getattr(menu, "_nullable", False))


def _has_value(menu: Any) -> bool:
    try:
        return menu.value is not None
    except (RuntimeError, ValueError):
        return False


def _set(menu: Any, layer: Layer | None) -> None:
    if layer is None:
        if _nullable(menu):
            menu.value = None
        return
    choices = menu.choices
    if layer not in choices:
        menu.reset_choices()
    if layer in menu.choices:
        menu.value = layer


# ------------------------------------------------------------------------------ pixels
def yx_shape(layer: Layer) -> tuple[int, int]:
    """(height, width) in pixels of an image layer (RGB(A) layers too; finest level)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(s) for s in data.shape)
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    if len(shape) < 2:
        raise ValueError(f"layer {layer.name!r} has {len(shape)} dimension(s); expected >= 2")
    return shape[-2], shape[-1]


def _colour_error(layer: Layer, what: str) -> ValueError:
    return ValueError(
        f"{what} {layer.name!r} is a colour image (its colour channels differ); fibre-bundle "
        "images are grey: click 'Convert to grey' (a new grey layer; this one stays as it is)"
    )


def require_layer(layer: Layer | None, what: str, kind: type[Layer] = Image) -> Layer:
    """Return ``layer`` or raise ValueError saying which layer is missing / of wrong kind.

    An RGB(A) image layer passes when its colour channels are equal (the package's one colour
    rule: it is grey); a true colour one is refused with the fix.
    """
    if layer is None:
        raise ValueError(f"choose {what} first (no layer selected)")
    if not isinstance(layer, kind):
        raise TypeError(f"{what} must be a {kind.__name__} layer, got {type(layer).__name__}")
    if is_true_colour(layer):
        raise _colour_error(layer, what)
    return layer


def is_true_colour(layer: Any) -> bool:
    """True for an RGB(A) image layer whose colour channels differ (not grey saved as RGB)."""
    if not isinstance(layer, Image) or not layer.rgb:
        return False
    data = layer.data[-1] if layer.multiscale else layer.data  # coarsest level: cheap
    key = (id(data), getattr(data, "shape", None))
    cached = getattr(layer, "_cycsr_colour", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    colour = grey_if_equal_channels(np.asarray(data)) is None
    try:
        layer._cycsr_colour = (key, colour)
    except AttributeError:  # pragma: no cover - layers accept attributes
        pass
    return colour


def _current_index(layer: Layer, viewer: Any | None, ndim: int) -> tuple[int, ...]:
    """Index of the displayed frame along the ``ndim - 2`` leading axes."""
    data = layer.data[0] if layer.multiscale else layer.data
    if viewer is None:
        return (0,) * (ndim - 2)
    step = viewer.dims.current_step
    offset = len(step) - ndim
    return tuple(
        int(np.clip(step[offset + i] if offset + i >= 0 else 0, 0, data.shape[i] - 1))
        for i in range(ndim - 2)
    )


def layer_array(
    layer: Image, viewer: Any | None = None, *, stack: bool = False, what: str = "the image"
) -> Any:
    """A grey image layer's pixels: the displayed frame ``(H, W)`` or the stack ``(..., H, W)``.

    Multiscale layers give their finest level. RGB(A) layers whose colour channels are equal
    are read as grey; a true colour layer raises ValueError naming the layer and the fix
    ("Convert to grey"). The layer's data is never modified (a view or a new array).

    Parameters
    ----------
    layer : napari.layers.Image
    viewer : napari.viewer.Viewer, optional
        Gives the displayed frame of a stack (default: the first frame).
    stack : bool
        Return the whole stack (numpy or dask as stored) instead of the displayed frame.
    what : str
        How error messages call the layer.
    """
    data = layer.data[0] if layer.multiscale else layer.data
    ndim = data.ndim - (1 if layer.rgb else 0)
    if ndim < 2:
        raise ValueError(f"{what} {layer.name!r} has {ndim} dimension(s); expected >= 2")
    if not (stack or ndim == 2):
        data = np.asarray(data[_current_index(layer, viewer, ndim)])
    if layer.rgb:
        try:
            data = as_grey(np.asarray(data), name=f"{what} {layer.name!r}")
        except ValueError as err:
            raise _colour_error(layer, what) from err
    return data


class GreyButton(PushButton):
    """"Convert to grey": shown while a watched menu holds a true colour layer.

    Clicking adds ``<name> [grey]`` (Rec. 601 luminance, float32, same scale and translate)
    and puts it in the menu; the colour layer is untouched.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    menus : list of ComboBox
        Image menus to watch (the first holding a true colour layer is converted).
    """

    def __init__(self, viewer: Any, menus: Sequence[Any]) -> None:
        super().__init__(
            text="Convert to grey",
            tooltip="The chosen image is in colour; fibre-bundle images are grey. Adds a grey "
            "copy (luminance) as a new layer and chooses it; the colour layer is untouched.",
        )
        self._viewer = viewer
        self.menus = list(menus)
        self.visible = False
        self.changed.connect(self.convert)
        for menu in self.menus:
            menu.changed.connect(self.update_visibility)

    def _colour_menu(self) -> Any:
        for menu in self.menus:
            if _has_value(menu) and is_true_colour(menu.value):
                return menu
        return None

    def update_visibility(self, _value: Any = None) -> None:
        try:
            self.visible = self._colour_menu() is not None
        except RuntimeError:  # the widget is gone
            pass

    def convert(self, _value: Any = None) -> Layer | None:
        """Add the grey copy of the first watched true colour layer and choose it."""
        menu = self._colour_menu()
        if menu is None:
            return None
        layer = menu.value
        data = layer.data[0] if layer.multiscale else layer.data
        grey = luminance(np.asarray(data))
        new = self._viewer.add_image(
            grey, name=f"{layer.name} [grey]", scale=tuple(layer.scale),
            translate=tuple(layer.translate), metadata={"cycsr_source": layer.name},
        )  # fmt: skip
        _set(menu, new)
        self.update_visibility()
        return new
