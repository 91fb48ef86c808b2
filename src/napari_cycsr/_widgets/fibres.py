"""Fibres widget: detect fibre cores, show Voronoi cells, reconstruct (TLI), lattices, CSV."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Points

from ._common import (
    BUNDLE_KEY,
    bundle_from_points,
    cell_edges,
    image_data_2d,
    layer_choices,
    output_spatial,
    overlay_factor,
    require_layer,
    robust_limits,
    spatial_kwargs,
)
from ._worker import guarded, run_in_thread

if TYPE_CHECKING:
    import napari

__all__ = ["FibresWidget", "add_fibre_points"]


def add_fibre_points(viewer: napari.viewer.Viewer, bundle: Any, name: str, like: Any) -> Points:
    """Add ``bundle``'s centres as a Points layer aligned with the layer ``like``."""
    return viewer.add_points(
        np.asarray(bundle.centres, dtype=float),
        name=name,
        size=0.5 * float(bundle.spacing),
        face_color="yellow",
        border_width=0,
        opacity=0.7,
        metadata={BUNDLE_KEY: bundle},
        **spatial_kwargs(like),
    )


class FibresWidget(Container):
    """Find the fibres of a bundle image and use them: cells, TLI reconstruction, CSV files.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the widget reads and adds to.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.worker: Any = None
        images = layer_choices(viewer, Image)
        self.image = ComboBox(label="bundle image", choices=images)
        self.background = ComboBox(label="background", choices=images, nullable=True, value=None)
        self.spacing = FloatSpinBox(
            label="core spacing (px)", value=0.0, min=0.0, max=200.0, step=0.1,
            tooltip="Distance between neighbouring cores; 0 estimates it from the image.",
        )  # fmt: skip
        self.detect_button = PushButton(text="Detect cores")
        self.points = ComboBox(label="fibres", choices=layer_choices(viewer, Points))
        self.voronoi_button = PushButton(text="Voronoi overlay")
        self.project_steps = SpinBox(
            label="projection steps", value=0, min=0, max=20,
            tooltip="After the TLI, project the image onto the measured core values with this "
            "many back-projection steps: a training-free sharpening that keeps the image "
            "consistent with the fibres (1-2 recommended; 0 = plain TLI).",
        )  # fmt: skip
        self.reconstruct_button = PushButton(text="Reconstruct (TLI)")
        self.lattice_button = PushButton(text="Synthetic lattice (core spacing, image size)")
        self.csv_path = FileEdit(label="fibre CSV", mode="w", filter="*.csv")
        self.save_button = PushButton(text="Save fibres CSV")
        self.load_button = PushButton(text="Load fibres CSV")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.image, self.background, self.spacing, self.detect_button, self.points,
                self.voronoi_button, self.project_steps, self.reconstruct_button,
                self.lattice_button, self.csv_path, self.save_button, self.load_button, self.status,
            ]
        )  # fmt: skip
        self._buttons = [
            self.detect_button, self.voronoi_button, self.reconstruct_button,
            self.lattice_button, self.save_button, self.load_button,
        ]  # fmt: skip
        self.detect_button.changed.connect(self.detect)
        self.voronoi_button.changed.connect(self.voronoi)
        self.reconstruct_button.changed.connect(self.reconstruct)
        self.lattice_button.changed.connect(self.lattice)
        self.save_button.changed.connect(self.save_csv)
        self.load_button.changed.connect(self.load_csv)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.reset_choices)

    # -- plumbing ------------------------------------------------------------------------
    def _start(self, func: Any, *args: Any, where: str, on_return: Any, **kwargs: Any) -> None:
        for button in self._buttons:
            button.enabled = False
        self.status.value = f"{where}..."

        def _finish() -> None:
            for button in self._buttons:
                button.enabled = True
            self.worker = None

        def _error(failure: Any) -> None:
            self.status.value = failure.message

        self.worker = run_in_thread(
            func, *args, where=where, on_return=on_return, on_error=_error, on_finish=_finish,
            **kwargs,
        )  # fmt: skip

    def _background(self, image: Image) -> np.ndarray | None:
        layer = self.background.value
        if layer is None:
            return None
        require_layer(layer, "the background")
        background = np.asarray(image_data_2d(layer, self._viewer))
        if background.shape != tuple(image.data.shape[-2:]):
            raise ValueError(
                f"background {layer.name!r} is {background.shape}, the image is "
                f"{tuple(image.data.shape[-2:])}; they must have the same height and width"
            )
        return background

    # -- actions ---------------------------------------------------------------------------
    @guarded("Detect cores")
    def detect(self) -> None:
        """Detect the cores of the current frame -> a Points layer of fibre centres."""
        from napari_cycsr.fibres import FibreBundle

        layer = require_layer(self.image.value, "the bundle image")
        raw = np.asarray(image_data_2d(layer, self._viewer), dtype=np.float32)
        background = self._background(layer)
        spacing = self.spacing.value or None

        def _done(bundle: Any) -> None:
            points = add_fibre_points(self._viewer, bundle, f"{layer.name} fibres", layer)
            self.points.value = points
            self.status.value = f"{bundle.n_fibres} fibres, spacing {bundle.spacing:.2f} px"

        self._start(
            FibreBundle.detect, raw, background=background, spacing=spacing,
            where="Detect cores", on_return=_done,
        )  # fmt: skip

    @guarded("Voronoi overlay")
    def voronoi(self) -> None:
        """Draw the Voronoi cell boundaries (and the field-of-view edge) over the image."""
        image = require_layer(self.image.value, "the image the fibres lie on")
        points = require_layer(self.points.value, "the fibre Points layer", Points)
        bundle = bundle_from_points(points, image)

        factor = overlay_factor(bundle.spacing, bundle.shape)

        def _boundaries() -> np.ndarray:
            from napari_cycsr.fibres import FibreBundle

            fine = bundle
            if factor > 1:  # the same cells on a finer grid: (c + 0.5) * k - 0.5 per axis
                h, w = bundle.shape
                fine = FibreBundle(
                    bundle.centres * factor + (factor - 1) / 2, (h * factor, w * factor),
                    fov_margin=bundle.fov_margin,
                )  # fmt: skip
            return cell_edges(fine.labels)

        def _done(edges: np.ndarray) -> None:
            self._viewer.add_image(
                edges, name=f"{points.name} cells", colormap="cyan", blending="additive",
                contrast_limits=(0, 1), opacity=0.6, metadata={BUNDLE_KEY: bundle},
                **output_spatial(image, factor, ndim=2),
            )  # fmt: skip
            self.status.value = f"{bundle.n_fibres} Voronoi cells (overlay x{factor})"

        self._start(_boundaries, where="Voronoi overlay", on_return=_done)

    @guarded("Reconstruct")
    def reconstruct(self) -> None:
        """Core values of the image (frame or stack) -> TLI reconstruction as a new layer."""
        image = require_layer(self.image.value, "the bundle image")
        points = require_layer(self.points.value, "the fibre Points layer", Points)
        bundle = bundle_from_points(points, image)
        background = self._background(image)
        data = image_data_2d(image, stack=True)
        steps = int(self.project_steps.value)

        def _tli() -> np.ndarray:
            values = bundle.core_values(np.asarray(data, dtype=np.float32), background=background)
            tli = bundle.reconstruct(values)
            if steps:
                from napari_cycsr.consistency import project_consistent

                tli = project_consistent(tli, bundle, values, iterations=steps)
            return tli

        def _done(tli: np.ndarray) -> None:
            suffix = f"[TLI + projection {steps}]" if steps else "[TLI]"
            self._viewer.add_image(
                tli, name=f"{image.name} {suffix}", contrast_limits=robust_limits(tli),
                scale=image.scale, translate=image.translate,
            )  # fmt: skip
            how = f", projected onto the core values ({steps} steps)" if steps else ""
            self.status.value = f"reconstructed {tli.shape} from {bundle.n_fibres} fibres{how}"

        self._start(_tli, where="Reconstruct", on_return=_done)

    @guarded("Synthetic lattice")
    def lattice(self) -> None:
        """A jittered hexagonal lattice in a circular field of view the size of the image."""
        from napari_cycsr.fibres import FibreBundle
        from napari_cycsr.simulate import hexagonal_lattice

        image = require_layer(self.image.value, "an image (it sets the lattice's size)")
        spacing = self.spacing.value
        if spacing < 1.5:
            raise ValueError(f"set the core spacing to at least 1.5 px (it is {spacing:g})")
        shape = tuple(int(s) for s in image.data.shape[-2:])
        centres = hexagonal_lattice(shape, spacing, jitter=0.1, fov="circle", seed=0)
        bundle = FibreBundle(centres, shape)
        self.points.value = add_fibre_points(self._viewer, bundle, f"lattice {spacing:g} px", image)
        self.status.value = f"{bundle.n_fibres} fibres on a {spacing:g} px lattice"

    def _csv(self) -> Path:
        path = Path(self.csv_path.value)
        if path.suffix.lower() != ".csv" or path.is_dir():
            raise ValueError(f"choose a .csv file for the fibre positions (got {str(path)!r})")
        return path

    @guarded("Save fibres")
    def save_csv(self) -> None:
        """Write the chosen Points layer's fibre centres (y, x pixels) to the CSV file."""
        points = require_layer(self.points.value, "the fibre Points layer", Points)
        path = self._csv()
        image = self.image.value if isinstance(self.image.value, Image) else None
        if image is not None:
            bundle = bundle_from_points(points, image)
        else:
            extent = np.ceil(np.asarray(points.data)[:, -2:].max(axis=0)).astype(int) + 1
            bundle = bundle_from_points(points, points, tuple(extent))
        bundle.save_csv(path)
        self.status.value = f"saved {bundle.n_fibres} fibres to {path.name}"

    @guarded("Load fibres")
    def load_csv(self) -> None:
        """Read fibre centres from the CSV file (ours or napari's Points CSV)."""
        from napari_cycsr.fibres import FibreBundle

        image = require_layer(self.image.value, "the image the fibres belong to")
        path = self._csv()
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        bundle = FibreBundle.from_csv(path, tuple(int(s) for s in image.data.shape[-2:]))
        self.points.value = add_fibre_points(self._viewer, bundle, path.stem, image)
        self.status.value = f"loaded {bundle.n_fibres} fibres from {path.name}"
