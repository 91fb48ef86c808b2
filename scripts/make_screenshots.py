"""Regenerate the tutorial's screenshots and responsiveness figures from a real napari viewer.

Run under a virtual display (no GPU needed; Mesa renders in software)::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/make_screenshots.py

(The window is 1600 x 950; plain ``xvfb-run -a`` works too.) ``--only rate_study.png
rate_summary.png`` rewrites just those images: the parts of the run that make none of them
are skipped, and ``tutorial_measurements.json`` is left as it is (the figures are printed).

Writes the tutorial's ``docs/images/*.png`` and ``docs/images/tutorial_measurements.json``.
Every widget is driven through its controls as a user would; the script waits for the
thread workers with the Qt event loop running, so the timings include napari's real event
handling.

Measured (figures in docs/tutorial.md):

* 30,000 fibres: time to create the fibre Points layer (incl. first draw), the Voronoi
  overlay (from the button click to the drawn layer), and the redraw time of the canvas with
  each shown (median of repeats; a forced synchronous draw, pixel read-back included).
* The main thread's longest block while the Train widget trains: a QTimer ticks every 10 ms
  and records the gaps between ticks.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
SHARED = ROOT.parent / "shared" / "data" / "pyfibrebundle"
#: The images each part of the run writes (``--only`` skips the parts writing none it names).
PARTS = {
    "30k": ("fibres_30k_voronoi.png",),
    "synthetic": (
        "fibres_synthetic.png", "train.png", "super_resolve.png", "evaluate.png",
        "evaluate_no_reference.png", "rate_study.png", "rate_summary.png",
    ),
    "real": ("real_detect_voronoi.png", "real_reconstruct.png", "real_super_resolve.png"),
}  # fmt: skip
#: The images to write (None: all).
ONLY: set[str] | None = None


def process(seconds: float = 0.0) -> None:
    """Run the Qt event loop for ``seconds`` (at least one pass)."""
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while True:
        QApplication.processEvents()
        if time.perf_counter() >= end:
            return
        time.sleep(0.005)


def wait_for(predicate, timeout: float = 600.0) -> float:
    """Process events until ``predicate()``; return the seconds it took."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("timed out waiting for a worker")
        process(0.01)
    return time.perf_counter() - start


def render(viewer) -> float:
    """Force one synchronous draw of the canvas (pixels read back included); seconds."""
    canvas = viewer.window._qt_viewer.canvas
    start = time.perf_counter()
    canvas.screenshot()
    return time.perf_counter() - start


def shot(viewer, name: str) -> None:
    if ONLY is not None and name not in ONLY:
        return
    process(0.5)
    image = viewer.screenshot(canvas_only=False, flash=False)
    PILImage.fromarray(np.asarray(image)).save(IMAGES / name)
    print(f"  wrote docs/images/{name}")


class GapMeter:
    """Records the gaps between ticks of a 10 ms QTimer: how long the main thread blocked."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now

    def __enter__(self) -> GapMeter:
        self._last = None
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.stop()

    def summary(self) -> dict:
        gaps = np.asarray(self.gaps) * 1000
        return {
            "ticks": int(gaps.size),
            "median_gap_ms": round(float(np.median(gaps)), 1),
            "p99_gap_ms": round(float(np.percentile(gaps, 99)), 1),
            "max_gap_ms": round(float(gaps.max()), 1),
            "gaps_over_100ms": int((gaps > 100).sum()),
        }


def dock(viewer, name: str, width: int = 460):
    from qtpy.QtCore import Qt

    dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-cycsr", name)
    dock_widget.setMaximumWidth(width)
    viewer.window._qt_window.resizeDocks([dock_widget], [width], Qt.Orientation.Horizontal)
    process(0.2)
    return dock_widget, widget


def undock(viewer, dock_widget) -> None:
    viewer.window.remove_dock_widget(dock_widget)
    process(0.1)


def median_redraw(viewer, repeats: int) -> float:
    times = []
    for i in range(repeats):
        viewer.scene.camera.zoom *= 1.02 if i % 2 else 1 / 1.02
        times.append(render(viewer))
    return statistics.median(times)


def measure_30k(viewer, repeats: int) -> dict:
    """Points layer and Voronoi overlay of ~30,000 fibres on a 1024 x 1024 image."""
    from skimage import data
    from skimage.transform import resize

    from napari_cycsr._widgets.fibres import add_fibre_points
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.simulate import hexagonal_lattice

    print("measuring 30,000 fibres ...")
    viewer.layers.clear()
    shape = (1024, 1024)
    image = resize(data.camera().astype(np.float32) / 255, shape).astype(np.float32)
    layer = viewer.add_image(image, name="1024 image")
    centres = hexagonal_lattice(shape, 5.6, jitter=0.1, fov="circle", seed=0)
    viewer.reset_view()
    process(1.0)
    out = {"n_fibres": int(len(centres)), "image": list(shape)}
    out["redraw_image_only_s"] = median_redraw(viewer, repeats)

    points_create = []
    for _ in range(3):
        for name in [ly.name for ly in viewer.layers if ly.name != "1024 image"]:
            viewer.layers.remove(name)
        process(0.1)
        start = time.perf_counter()
        bundle = FibreBundle(centres, shape)
        add_fibre_points(viewer, bundle, "30k fibres", layer)
        render(viewer)
        points_create.append(time.perf_counter() - start)
    out["points_create_and_first_draw_s"] = statistics.median(points_create)
    out["redraw_with_points_s"] = median_redraw(viewer, repeats)

    dock_widget, widget = dock(viewer, "Fibres")
    widget.image.value = layer
    widget.points.value = viewer.layers["30k fibres"]
    overlay = []
    for _ in range(3):
        viewer.layers["30k fibres"].metadata.clear()  # no cached labels: full cost each time
        if "30k fibres cells" in viewer.layers:
            viewer.layers.remove("30k fibres cells")
        start = time.perf_counter()
        with GapMeter() as meter:
            widget.voronoi_button.native.click()
            wait_for(lambda: widget.worker is None)
        render(viewer)
        overlay.append(time.perf_counter() - start)
    out["voronoi_overlay_click_to_drawn_s"] = statistics.median(overlay)
    out["voronoi_main_thread_gaps"] = meter.summary()
    out["redraw_with_points_and_voronoi_s"] = median_redraw(viewer, repeats)
    viewer.scene.camera.zoom = 6
    viewer.scene.camera.center = (0, 512, 512)
    shot(viewer, "fibres_30k_voronoi.png")

    # the alternative design, for comparison: a Labels layer of cell ids drawn as contours
    bundle = viewer.layers["30k fibres"].metadata.get("cycsr_bundle") or FibreBundle(centres, shape)
    labels = bundle.labels + 1
    viewer.layers["30k fibres cells"].visible = False
    viewer.reset_view()
    start = time.perf_counter()
    viewer.add_labels(labels, name="cells as Labels").contour = 1
    render(viewer)
    out["labels_contour_create_and_first_draw_s"] = time.perf_counter() - start
    out["redraw_with_points_and_labels_contour_s"] = median_redraw(viewer, repeats)
    undock(viewer, dock_widget)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def synthetic_workflow(viewer, iterations: int, tmp: Path) -> dict:
    """Sample data -> fibres -> train -> super-resolve -> evaluate, with screenshots."""
    print("synthetic workflow ...")
    viewer.layers.clear()
    viewer.open_sample("napari-cycsr", "synthetic_pcle")
    lr = viewer.layers["pCLE LR (TLI)"]
    fibres = viewer.layers["fibres"]
    fibres.visible = True
    viewer.reset_view()

    dock_widget, widget = dock(viewer, "Fibres")
    widget.image.value = lr
    widget.points.value = fibres
    widget.voronoi_button.native.click()
    wait_for(lambda: widget.worker is None)
    viewer.scene.camera.zoom = 12
    viewer.scene.camera.center = (0, 90, 120)
    shot(viewer, "fibres_synthetic.png")
    undock(viewer, dock_widget)
    viewer.layers.remove("fibres cells")
    fibres.visible = False
    viewer.reset_view()

    dock_widget, widget = dock(viewer, "Train")
    widget.lr_layers.value = [lr]
    widget.fibres.value = fibres
    widget.form.preset.value = "tiny"
    widget.form.iterations.value = iterations
    widget.form.batch_size.value = 4
    widget.form.patch.value = 48
    widget.form.preview_every.value = 10
    widget.form.device.value = "cpu"
    widget.model_path.value = tmp / "synthetic.safetensors"
    with GapMeter() as meter:
        widget.start_button.native.click()
        seconds = wait_for(lambda: widget.worker is None)
    train = {"iterations": iterations, "seconds": round(seconds, 1), **meter.summary()}
    viewer.layers.selection.active = viewer.layers["CycSR preview"]
    shot(viewer, "train.png")
    undock(viewer, dock_widget)

    dock_widget, widget = dock(viewer, "Super-resolve")
    widget.image.value = lr
    widget.model.value = widget.model.choices[0]
    widget.fibres.value = fibres
    with GapMeter() as meter:
        widget.run_button.native.click()
        wait_for(lambda: widget.worker is None)
    sr_gaps = meter.summary()
    viewer.layers["CycSR preview"].visible = False
    shot(viewer, "super_resolve.png")
    undock(viewer, dock_widget)

    dock_widget, widget = dock(viewer, "Evaluate", width=640)
    (sr_layer,) = [ly for ly in viewer.layers if ly.name.startswith("pCLE LR (TLI) [SR")]
    widget.sr.value = sr_layer
    widget.input.value = lr
    widget.reference.value = viewer.layers["ground truth HR"]
    widget.fibres.value = fibres
    widget.evaluate_button.native.click()
    wait_for(lambda: widget.worker is None)
    shot(viewer, "evaluate.png")
    table = widget.copy_csv()
    widget.reference.value = None
    widget.metric.value = "sharpness"
    widget.evaluate_button.native.click()
    wait_for(lambda: widget.worker is None)
    shot(viewer, "evaluate_no_reference.png")
    table_no_reference = widget.copy_csv()
    undock(viewer, dock_widget)
    rate = rate_study(viewer, lr, tmp)
    return {
        "train": train, "super_resolve_main_thread_gaps": sr_gaps, "evaluate_csv": table,
        "evaluate_no_reference_csv": table_no_reference, "rate": rate,
    }  # fmt: skip


def rate_study(viewer, lr, tmp: Path) -> dict:
    """The Rate widget: a blinded study of three results, two cases answered, the summary."""
    import napari

    from napari_cycsr import sharpen

    print("rate study ...")
    stack = np.stack([lr.data, lr.data[::-1]])  # two cases: the image and its mirror
    viewer.add_image(stack, name="input (2 cases)", visible=False)
    viewer.add_image(np.stack([viewer.layers["ground truth HR"].data] * 2), name="reference",
                     visible=False)  # fmt: skip
    (sr,) = [ly for ly in viewer.layers if ly.metadata.get("cycsr_source") == "pCLE LR (TLI)"
             and ly.name.startswith("pCLE LR (TLI) [SR")]  # fmt: skip
    results = {}
    results["CycSR"] = np.stack([sr.data, sr.data[::-1]])
    sharp = sharpen(lr.data)
    results["sharpening"] = np.stack([sharp, sharp[::-1]])
    results["TLI"] = stack
    for name, data in results.items():
        viewer.add_image(data.astype(np.float32), name=name, visible=False)
    dock_widget, widget = dock(viewer, "Rate", width=560)
    widget.input.value = viewer.layers["input (2 cases)"]
    widget.reference.value = viewer.layers["reference"]
    widget.results.value = [viewer.layers[n] for n in ("TLI", "sharpening", "CycSR")]
    widget.rater.value = "demo rater"
    widget.answers_file.value = tmp / "answers.csv"
    study_viewers = []

    def factory():
        study = napari.Viewer(show=True, title="CycSR rating study")
        study.window._qt_window.resize(1500, 900)
        study_viewers.append(study)
        return study

    widget.viewer_factory = factory
    widget.start_button.native.click()
    process(1.0)
    study = study_viewers[-1]
    form = widget.form
    shot(study, "rate_study.png")
    given = {"TLI": 3, "sharpening": 2, "CycSR": 4}  # illustrative answers for the screenshot
    while form.case is not None:
        for slot, method in form.case.slots.items():
            for menu in form.scores[slot].values():
                menu.value = given[method]
        form.save_button.native.click()
        process(0.3)
    study.close()
    text = widget.show_summary()
    shot(viewer, "rate_summary.png")
    undock(viewer, dock_widget)
    return {"summary": text}


def real_workflow(viewer, iterations: int, tmp: Path) -> dict:
    """tissue_paper.tif: detect -> Voronoi overlay -> reconstruct -> train -> super-resolve."""
    print("real-frame workflow ...")
    viewer.layers.clear()
    raw = np.asarray(PILImage.open(SHARED / "tissue_paper.tif"), dtype=np.float32)
    back = np.asarray(PILImage.open(SHARED / "tissue_paper_back.tif"), dtype=np.float32)
    viewer.add_image(back, name="tissue_paper_back", visible=False)
    raw_layer = viewer.add_image(raw, name="tissue_paper")
    dock_widget, widget = dock(viewer, "Fibres")
    widget.image.value = raw_layer
    widget.background.value = viewer.layers["tissue_paper_back"]
    out = {}
    start = time.perf_counter()
    with GapMeter() as meter:
        widget.detect_button.native.click()
        wait_for(lambda: widget.worker is None)
        render(viewer)
    out["detect_s"] = round(time.perf_counter() - start, 2)
    out["detect_main_thread_gaps"] = meter.summary()
    out["detect_status"] = widget.status.value
    start = time.perf_counter()
    with GapMeter() as meter:
        widget.voronoi_button.native.click()
        wait_for(lambda: widget.worker is None)
        render(viewer)
    out["voronoi_s"] = round(time.perf_counter() - start, 2)
    out["voronoi_main_thread_gaps"] = meter.summary()
    viewer.layers["tissue_paper fibres"].size = 1.5
    viewer.scene.camera.zoom = 14
    viewer.scene.camera.center = (0, 480, 640)
    shot(viewer, "real_detect_voronoi.png")
    start = time.perf_counter()
    with GapMeter() as meter:
        widget.reconstruct_button.native.click()
        wait_for(lambda: widget.worker is None)
        render(viewer)
    out["reconstruct_s"] = round(time.perf_counter() - start, 2)
    out["reconstruct_main_thread_gaps"] = meter.summary()
    viewer.layers["tissue_paper fibres cells"].visible = False
    viewer.layers["tissue_paper fibres"].visible = False
    raw_layer.visible = False
    viewer.reset_view()
    shot(viewer, "real_reconstruct.png")
    undock(viewer, dock_widget)

    tli = viewer.layers["tissue_paper [TLI]"]
    fibres = viewer.layers["tissue_paper fibres"]
    dock_widget, widget = dock(viewer, "Train")
    widget.lr_layers.value = [tli]
    widget.fibres.value = fibres
    widget.form.preset.value = "tiny"
    widget.form.iterations.value = iterations
    widget.form.batch_size.value = 4
    widget.form.patch.value = 48
    widget.form.preview_every.value = 0
    widget.form.device.value = "cpu"
    widget.model_path.value = tmp / "tissue.safetensors"
    widget.start_button.native.click()
    wait_for(lambda: widget.worker is None)
    undock(viewer, dock_widget)

    dock_widget, widget = dock(viewer, "Super-resolve")
    widget.image.value = tli
    widget.model.value = widget.model.choices[0]
    widget.fibres.value = fibres
    widget.run_button.native.click()
    wait_for(lambda: widget.worker is None)
    viewer.scene.camera.zoom = 3
    viewer.scene.camera.center = (0, 480, 640)
    shot(viewer, "real_super_resolve.png")
    undock(viewer, dock_widget)
    out["console_pattern"] = console_pattern(viewer, tmp / "tissue.safetensors")
    return out


def console_pattern(viewer, model_path: Path) -> str:
    """The scripting pattern of the tutorial, run as written there."""
    from napari_cycsr import FibreBundle, load_model, models_in_session, super_resolve

    raw = viewer.layers["tissue_paper"].data
    background = viewer.layers["tissue_paper_back"].data
    bundle = FibreBundle.detect(raw, background=background)
    values = bundle.core_values(raw, background=background)
    tli = bundle.reconstruct(values)
    viewer.add_image(tli, name="TLI (script)")
    viewer.add_points(bundle.centres, name="fibres (script)", size=bundle.spacing / 2)

    model = load_model(model_path)
    sr = super_resolve(model, tli, mask=bundle.fov_mask)
    viewer.add_image(sr, name="SR (script)")
    trained = models_in_session()                                # the Train widget's models
    return f"{bundle!r}; SR {sr.shape} {sr.dtype}; session models {list(trained)}"


def main() -> None:
    import tempfile

    faulthandler.enable()
    import napari

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60, help="training iterations")
    parser.add_argument("--repeats", type=int, default=7, help="redraw repeats (median)")
    parser.add_argument("--skip-30k", action="store_true", help="skip the 30,000-fibre timing")
    parser.add_argument("--skip-real", action="store_true", help="skip tissue_paper.tif")
    parser.add_argument("--skip-synthetic", action="store_true", help="skip the sample workflow")
    parser.add_argument(
        "--only", nargs="+", metavar="IMAGE", choices=[n for ns in PARTS.values() for n in ns],
        help="write only these images; keep tutorial_measurements.json as it is",
    )  # fmt: skip
    args = parser.parse_args()
    if args.only:
        global ONLY
        ONLY = set(args.only)
        for part, flag in (("30k", "skip_30k"), ("synthetic", "skip_synthetic"),
                           ("real", "skip_real")):  # fmt: skip
            if not ONLY & set(PARTS[part]):
                setattr(args, flag, True)

    IMAGES.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True, title="napari-cycsr")
    viewer.window._qt_window.resize(1600, 950)
    process(1.0)
    results: dict = {
        "command": 'xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python '
        "scripts/make_screenshots.py " + " ".join(sys.argv[1:])
    }
    with tempfile.TemporaryDirectory(prefix="cycsr-shots-") as tmp:
        # the models trained here go to a scratch models folder, not the user's
        os.environ["NAPARI_CYCSR_MODELS"] = str(Path(tmp) / "models")
        if not args.skip_30k:  # first: forced draws after many layer changes crash llvmpipe
            results["fibres_30k"] = measure_30k(viewer, args.repeats)
        if not args.skip_synthetic:
            results["synthetic"] = synthetic_workflow(viewer, args.iterations, Path(tmp))
        if not args.skip_real:
            results["real"] = real_workflow(viewer, args.iterations, Path(tmp))
    if ONLY is None:
        (IMAGES / "tutorial_measurements.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    viewer.close()


if __name__ == "__main__":
    main()
