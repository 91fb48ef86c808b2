"""The Video widget's screenshot for docs/video.md, from a real napari viewer.

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/make_video_screenshot.py

Loads the *Synthetic pCLE video* sample, registers it in the Video widget (shifts and
confidence plotted) and fuses HR^ next to the TLI frame; writes ``docs/images/video_widget.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_screenshots import dock, process, shot, wait_for  # noqa: E402


def main() -> None:
    import napari

    from napari_cycsr._sample_data import synthetic_pcle_video

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 950)
    for data, kwargs, kind in synthetic_pcle_video():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    _, widget = dock(viewer, "Video")
    widget.video.value = viewer.layers["pCLE video (TLI)"]
    widget.fibres.value = viewer.layers["video fibres"]
    widget.register_button.native.click()
    wait_for(lambda: widget.worker is None)
    widget.fuse_button.native.click()
    wait_for(lambda: widget.worker is None)
    viewer.dims.set_current_step(0, 0)  # the TLI of frame 0, the frame HR^ is for
    grid = getattr(viewer, "canvas", viewer).grid if hasattr(viewer, "canvas") else viewer.grid
    grid.enabled = True
    grid.shape = (1, 2)
    for layer in viewer.layers:
        layer.visible = layer.name in ("pCLE video (TLI)", "pCLE video (TLI) HR^ (frame 0)")
    viewer.reset_view()
    process(1.0)
    shot(viewer, "video_widget.png")
    viewer.close()


if __name__ == "__main__":
    main()
