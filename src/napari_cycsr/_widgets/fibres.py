"""Fibres widget: detect fibre cores, show Voronoi cells, reconstruct (TLI), lattices, CSV."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Points

from napari_cycsr._progress import relay

from ._common import (
    BUNDLE_KEY,
    bundle_from_points,
    cell_edges,
    output_spatial,
    overlay_factor,
    robust_limits,
    spatial_kwargs,
)
from ._form import Form
from ._layers import (
    ActiveLayerFollower,
    GreyButton,
    layer_array,
    layer_choices,
    require_layer,
    yx_shape,
)
from ._worker import Runner, Step, guarded, warn

if TYPE_CHECKING:
    import napari

__all__ = ["SMALL_FOV", "SPARSE", "FibresWidget", "add_fibre_points", "lattice_density"]

#: Detection without a background whose cores cover less of the frame than this is suspect.
SMALL_FOV = 0.2
#: ... or whose cores fill their convex hull less densely than this fraction of a hexagonal
#: lattice at their spacing (complete detections on the real test frames give 0.87-0.88;
#: tissue_paper.tif without its background, which misses half the cores, 0.49).
SPARSE = 0.7
_BACKGROUND_NAME = re.compile(r"back|flat|bg\b|blank", re.IGNORECASE)


def lattice_density(bundle: Any) -> float:
    """Found cores over the cores of a hexagonal lattice at their spacing filling their hull."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        area = ConvexHull(np.asarray(bundle.centres, dtype=float)).volume
    except (QhullError, ValueError):
        return 0.0
    cell = float(bundle.spacing) ** 2 * np.sqrt(3) / 2
    return float(bundle.n_fibres / (area / cell)) if area > 0 else 0.0


def add_fibre_points(viewer: napari.viewer.Viewer, bundle: Any, name: str, like: Any) -> Points:
    """Add ``bundle``'s centres as a Points layer aligned with the layer ``like``."""
    return viewer.add_points(
        np.asarray(bundle.centres, dtype=float),
        name=name,
        size=0.5 * float(bundle.spacing),
        face_color="yellow",
        border_width=0,
        opacity=0.7,
        metadata={BUNDLE_KEY: bundle, "cycsr_source": getattr(like, "name", "")},
        **spatial_kwargs(like),
    )


class FibresWidget(Form):
    """Find the fibres of a bundle image and use them: cells, TLI reconstruction, CSV files.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the widget reads and adds to.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        images = layer_choices(viewer, Image)
        self.image = ComboBox(
            label="bundle image", choices=images,
            tooltip="The raw camera frame (or stack: the displayed frame is used for "
            "detection) whose fibre cores to find or reconstruct. Follows the layer you select.",
        )  # fmt: skip
        self.background = ComboBox(
            label="background", choices=images, nullable=True, value=None,
            tooltip="The background (flat-field) frame of the same bundle: an image of a "
            "uniform target. Detection finds every core with it; reconstruction divides by it.",
        )  # fmt: skip
        self.grey = GreyButton(viewer, [self.image, self.background])
        self.spacing = FloatSpinBox(
            label="core spacing (px)", value=0.0, min=0.0, max=200.0, step=0.1,
            tooltip="Distance between neighbouring cores; 0 estimates it from the image.",
        )  # fmt: skip
        self.detect_button = PushButton(
            text="Detect cores",
            tooltip="Find the fibre cores of the displayed frame -> a Points layer of centres.",
        )
        self.points = ComboBox(
            label="fibres", choices=layer_choices(viewer, Points),
            tooltip="The fibre centres (Points layer) used by the buttons below.",
        )  # fmt: skip
        self.voronoi_button = PushButton(
            text="Voronoi overlay",
            tooltip="Draw each fibre's Voronoi cell and the field-of-view edge over the image.",
        )
        self.project_steps = SpinBox(
            label="projection steps", value=0, min=0, max=20,
            tooltip="After the TLI, project the image onto the measured core values with this "
            "many back-projection steps: a training-free sharpening that keeps the image "
            "consistent with the fibres (1-2 recommended; 0 = plain TLI).",
        )  # fmt: skip
        self.reconstruct_button = PushButton(
            text="Reconstruct (TLI)",
            tooltip="Read every core (divided by the background when chosen) on every frame "
            "and interpolate them on the Delaunay triangulation -> a new image layer.",
        )  # fmt: skip
        self.lattice_button = PushButton(
            text="Synthetic lattice (core spacing, image size)",
            tooltip="A jittered hexagonal lattice with the core spacing above, in a circular "
            "field of view the size of the bundle image (to simulate a probe).",
        )  # fmt: skip
        self.csv_path = FileEdit(
            label="fibre CSV", mode="w", filter="*.csv",
            tooltip="File for Save / Load: y,x columns in pixels (napari's Points CSV loads too).",
        )  # fmt: skip
        self.save_button = PushButton(
            text="Save fibres CSV", tooltip="Write the chosen fibres' centres to the CSV file."
        )
        self.load_button = PushButton(
            text="Load fibres CSV",
            tooltip="Read fibre centres from the CSV file onto the bundle image's grid.",
        )
        self.cancel_button = PushButton(
            text="Cancel", tooltip="Stop the running step (its result is not added)."
        )
        self.progress = ProgressBar(
            value=0, min=0, max=1, label="progress", tooltip="Progress of the running step."
        )
        self.status = Label(value="", tooltip="What the widget did last.")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.image, self.background, self.grey, self.spacing, self.detect_button,
                self.points, self.voronoi_button, self.project_steps, self.reconstruct_button,
                self.lattice_button, self.csv_path, self.save_button, self.load_button,
                self.cancel_button, self.progress, self.status,
            ]
        )  # fmt: skip
        self.finish()
        self._buttons = [
            self.detect_button, self.voronoi_button, self.reconstruct_button,
            self.lattice_button, self.save_button, self.load_button,
        ]  # fmt: skip
        self.runner = Runner(
            self, viewer, "Fibres", progress=self.progress, status=self.status,
            busy_widgets=self._buttons, cancel_button=self.cancel_button,
        )  # fmt: skip
        self.follower = ActiveLayerFollower(
            viewer, [(self.image, Image, True), (self.background, Image, False),
                     (self.points, Points, True)],
        )  # fmt: skip
        self._suggest_background()
        self.grey.update_visibility()
        self.detect_button.changed.connect(self.detect)
        self.voronoi_button.changed.connect(self.voronoi)
        self.reconstruct_button.changed.connect(self.reconstruct)
        self.lattice_button.changed.connect(self.lattice)
        self.save_button.changed.connect(self.save_csv)
        self.load_button.changed.connect(self.load_csv)
        self.image.changed.connect(self._suggest_background)

    @property
    def worker(self) -> Any:
        """The running thread worker (None when idle)."""
        return self.runner.worker

    def _suggest_background(self, _value: Any = None) -> None:
        """Pre-fill an empty background menu with a layer named like one, of the same size."""
        image = self.image.value
        if self.background.value is not None or not isinstance(image, Image):
            return
        for layer in reversed(self._viewer.layers):
            if (
                layer is not image
                and isinstance(layer, Image)
                and _BACKGROUND_NAME.search(layer.name)
                and yx_shape(layer) == yx_shape(image)
            ):
                self.background.value = layer
                return

    def _add(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Add a result layer without making the menus follow it."""
        self.follower.paused += 1
        try:
            return func(*args, **kwargs)
        finally:
            self.follower.paused -= 1

    def _background(self, image: Image) -> np.ndarray | None:
        layer = self.background.value
        if layer is None:
            return None
        require_layer(layer, "the background")
        background = np.asarray(layer_array(layer, self._viewer, what="the background"))
        if background.shape != yx_shape(image):
            raise ValueError(
                f"the background {layer.name!r} is {background.shape[0]}x{background.shape[1]}"
                f" but the image {image.name!r} is {yx_shape(image)[0]}x{yx_shape(image)[1]};"
                " they must have the same height and width"
            )
        return background

    # -- actions ---------------------------------------------------------------------------
    @guarded("Detect cores")
    def detect(self) -> None:
        """Detect the cores of the current frame -> a Points layer of fibre centres."""
        from napari_cycsr.fibres import FibreBundle

        self.runner.check_free()
        layer = require_layer(self.image.value, "the bundle image")
        raw = np.asarray(layer_array(layer, self._viewer, what="the bundle image"), np.float32)
        background = self._background(layer)
        spacing = self.spacing.value or None

        def _work() -> Any:
            yield Step(0, 2, "finding the cores...")
            bundle = FibreBundle.detect(raw, background=background, spacing=spacing)
            yield Step(1, 2, f"{bundle.n_fibres} cores; their cells and field of view...")
            fov = float(bundle.fov_mask.mean())  # cached for the overlay and reconstruction
            yield Step(2, 2, "adding the points...")
            return bundle, fov, lattice_density(bundle)

        def _done(result: Any) -> None:
            bundle, fov, density = result
            points = self._add(
                add_fibre_points, self._viewer, bundle, f"{layer.name} fibres", layer
            )
            self.points.value = points
            self.runner.say(
                f"finished: {bundle.n_fibres} fibres, spacing {bundle.spacing:.2f} px, "
                f"field of view {100 * fov:.0f} % of the frame"
            )
            if background is None and (fov < SMALL_FOV or density < SPARSE):
                warn(
                    f"Detect cores: without a background frame, the {bundle.n_fibres} cores "
                    f"found cover {100 * fov:.1f} % of the frame and fill it {density:.2f} as "
                    "densely as a full lattice at their spacing: dim cores were probably "
                    "missed. Choose the background (flat-field) frame of this bundle and "
                    "detect again."
                )

        self.runner.start(_work, where="Detect cores", on_return=_done, total=2)

    @guarded("Voronoi overlay")
    def voronoi(self) -> None:
        """Draw the Voronoi cell boundaries (and the field-of-view edge) over the image."""
        self.runner.check_free()
        image = require_layer(self.image.value, "the image the fibres lie on")
        points = require_layer(self.points.value, "the fibre Points layer", Points)
        bundle = bundle_from_points(points, image)
        factor = overlay_factor(bundle.spacing, bundle.shape)

        def _work() -> Any:
            from napari_cycsr.fibres import FibreBundle

            fine = bundle
            if factor > 1:  # the same cells on a finer grid: (c + 0.5) * k - 0.5 per axis
                h, w = bundle.shape
                fine = FibreBundle(
                    bundle.centres * factor + (factor - 1) / 2, (h * factor, w * factor),
                    fov_margin=bundle.fov_margin,
                )  # fmt: skip
            yield Step(0, 2, f"cells of {bundle.n_fibres} fibres (x{factor} finer grid)...")
            labels = fine.labels
            yield Step(1, 2, "cell borders...")
            edges = cell_edges(labels)
            yield Step(2, 2, "adding the overlay...")
            return edges

        def _done(edges: np.ndarray) -> None:
            self._add(
                self._viewer.add_image,
                edges, name=f"{points.name} cells", colormap="cyan", blending="additive",
                contrast_limits=(0, 1), opacity=0.6, metadata={BUNDLE_KEY: bundle},
                **output_spatial(image, factor, ndim=2),
            )  # fmt: skip
            self.runner.say(f"finished: {bundle.n_fibres} Voronoi cells (overlay x{factor})")

        self.runner.start(_work, where="Voronoi overlay", on_return=_done, total=2)

    @guarded("Reconstruct")
    def reconstruct(self) -> None:
        """Core values of the image (frame or stack) -> TLI reconstruction as a new layer."""
        self.runner.check_free()
        image = require_layer(self.image.value, "the bundle image")
        points = require_layer(self.points.value, "the fibre Points layer", Points)
        bundle = bundle_from_points(points, image)
        background = self._background(image)
        data = layer_array(image, stack=True, what="the bundle image")
        steps = int(self.project_steps.value)

        def _work() -> Any:
            from napari_cycsr.workflows import iter_reconstruct

            # the pipeline `cycsr reconstruct` runs too: core values -> TLI (-> projection)
            gen = iter_reconstruct(data, bundle, background=background, project=steps)
            image, _values = yield from relay(gen, lambda step: Step(
                step.done, step.total,
                "adding the layer..." if step.done == step.total else step.text,
            ))  # fmt: skip
            return image

        def _done(tli: np.ndarray) -> None:
            suffix = f"[TLI + projection {steps}]" if steps else "[TLI]"
            self._add(
                self._viewer.add_image,
                tli, name=f"{image.name} {suffix}", contrast_limits=robust_limits(tli),
                scale=tuple(image.scale), translate=tuple(image.translate),
                metadata={"cycsr_source": image.name, "cycsr_fibres": points.name},
            )  # fmt: skip
            how = f", projected onto the core values ({steps} steps)" if steps else ""
            self.runner.say(
                f"finished: reconstructed {tli.shape} from {bundle.n_fibres} fibres{how}"
            )

        def _cancelled() -> None:
            self.runner.say(f"cancelled: {image.name!r} not reconstructed (no layer added)")

        self.runner.start(
            _work, where="Reconstruct", on_return=_done, on_cancel=_cancelled, total=0
        )

    @guarded("Synthetic lattice")
    def lattice(self) -> None:
        """A jittered hexagonal lattice in a circular field of view the size of the image."""
        from napari_cycsr.fibres import FibreBundle
        from napari_cycsr.simulate import hexagonal_lattice

        image = require_layer(self.image.value, "an image (it sets the lattice's size)")
        spacing = self.spacing.value
        if spacing < 1.5:
            raise ValueError(f"set the core spacing to at least 1.5 px (it is {spacing:g})")
        shape = yx_shape(image)
        centres = hexagonal_lattice(shape, spacing, jitter=0.1, fov="circle", seed=0)
        bundle = FibreBundle(centres, shape)
        self.points.value = self._add(
            add_fibre_points, self._viewer, bundle, f"lattice {spacing:g} px", image
        )
        self.runner.say(f"{bundle.n_fibres} fibres on a {spacing:g} px lattice")

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
        self.runner.say(f"saved {bundle.n_fibres} fibres to {path.name}")

    @guarded("Load fibres")
    def load_csv(self) -> None:
        """Read fibre centres from the CSV file (ours or napari's Points CSV)."""
        from napari_cycsr.fibres import FibreBundle

        image = require_layer(self.image.value, "the image the fibres belong to")
        path = self._csv()
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        bundle = FibreBundle.from_csv(path, yx_shape(image))
        self.points.value = self._add(add_fibre_points, self._viewer, bundle, path.stem, image)
        self.runner.say(f"loaded {bundle.n_fibres} fibres from {path.name}")
