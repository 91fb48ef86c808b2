"""Artefacts on real fibre-bundle frames: frame-border stripes, streaks, sharpened fixed pattern.

Runs a model (a model file, or a pretrained one: ``--model pretrained:default``) on the real
frames of ``../shared/data/pyfibrebundle`` (cores detected on the background frame, core
values flat-fielded by it, TLI on the bounding box of the cores, so that the bundle's field
of view reaches the frame border, as on a camera smaller than the bundle's image) and
measures, against the TLI input:

* **border stripes**: the RMS and the largest ``|SR - TLI|`` over field-of-view pixels within
  8 px of the camera-frame border, next to the same over the interior; once with the
  current inference (the frame mirrored by the network's receptive radius) and once with
  the network applied straight to the frame (its convolutions' zero padding, as before);
* **directional streaks**: ``metrics.gradient_ratio`` of the added detail ``SR - TLI``
  (about 1 = no direction; issue 13 measured 1.7 for the default model then);
* **sharpened fixed pattern** (the 12-frame USAF video, ``super_res/``): the scene moves
  between frames while the cores stay, so the temporal mean of each core's neighbour
  residual (``consistency`` plane predictor) is the fixed pattern; its RMS for the output's
  cell means over the input values' is the pattern's amplification (1 = none).

Every output is the default single-frame result: the network, then the noise-aware
projection onto the frame's core values. Prints Markdown tables::

    python benchmarks/bench_real.py --model pretrained:default
    python benchmarks/bench_real.py --model model.safetensors --frames 4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REAL_FRAMES, SHARED_DATA, load_real_frame, markdown_table  # noqa: E402

BORDER = 8  # px: the band along the camera-frame border


def _load(spec: str) -> Any:
    from napari_cycsr import load_model, pretrained

    if spec.startswith("pretrained"):
        return pretrained(spec.partition(":")[2] or "default")
    return load_model(spec)


def _zero_padded(model: Any, frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The network on the FOV-filled frame with its convolutions' zero padding (the old way)."""
    import torch

    from napari_cycsr._validate import nearest_fill_index

    fill = nearest_fill_index(mask)
    data = frame[fill] if fill is not None else frame
    x = model.normalise(torch.from_numpy(np.ascontiguousarray(data, np.float32))[None, None])
    with torch.inference_mode():
        y = model.generator.eval()(x)[0, 0]
    out = model.denormalise(y).numpy()
    out[~mask] = 0.0
    return out


def border_and_streaks(model: Any, log: Any) -> list[list[str]]:
    from napari_cycsr.consistency import project_consistent
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.metrics import gradient_ratio

    rows = []
    for name in REAL_FRAMES:
        raw, bg = load_real_frame(name)
        full = FibreBundle.detect(bg)
        values = full.core_values(raw, background=bg)
        # crop to the bounding box of the cores, as a smaller camera (or a user saving
        # pixels) would: the field of view then reaches the frame border
        c = full.centres
        y0, x0 = int(np.ceil(c[:, 0].min())), int(np.ceil(c[:, 1].min()))
        y1, x1 = int(np.floor(c[:, 0].max())) + 1, int(np.floor(c[:, 1].max())) + 1
        inside = (c[:, 0] >= y0 - 0.5) & (c[:, 0] <= y1 - 0.5) & (c[:, 1] >= x0 - 0.5)
        inside &= c[:, 1] <= x1 - 0.5
        bundle = FibreBundle(c[inside] - [y0, x0], (y1 - y0, x1 - x0))
        values = values[inside]
        tli = bundle.reconstruct(values)
        m = bundle.fov_mask
        t0 = time.perf_counter()
        sr = super_resolve(model, tli, device="cpu", bundle=bundle, values=values)
        seconds = time.perf_counter() - t0
        old = project_consistent(_zero_padded(model, tli, m), bundle, values)
        # the baseline: the projection alone (no network), what the border and the streak
        # measures read when nothing is learned
        base = project_consistent(tli, bundle, values)
        h, w = m.shape
        near = np.zeros_like(m)
        near[:BORDER], near[-BORDER:], near[:, :BORDER], near[:, -BORDER:] = True, True, True, True
        band, inner = m & near, m & ~near
        for label, out in (
            ("mirrored (now)", sr),
            ("zero padding (before)", old),
            ("TLI + projection (no network)", base),
        ):
            d = out - tli
            rows.append(
                [
                    name,
                    label,
                    f"{int(band.sum())}",
                    f"{np.sqrt(np.mean(d[band] ** 2)):.4f}" if band.any() else "n/a",
                    f"{np.abs(d[band]).max():.3f}" if band.any() else "n/a",
                    f"{np.sqrt(np.mean(d[inner] ** 2)):.4f}",
                    f"{gradient_ratio(out, tli, mask=m):.2f}",
                ]
            )
        log(f"  {name}: {bundle.n_fibres} cores, {h}x{w} px, super-resolved in {seconds:.1f} s")
    return rows


def fixed_pattern(model: Any, n_frames: int, log: Any) -> list[list[str]]:
    from PIL import Image

    from napari_cycsr.consistency import _neighbourhood, project_consistent
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.inference import super_resolve

    folder = SHARED_DATA / "super_res"
    _, bg = load_real_frame("usaf1")
    bundle = FibreBundle.detect(bg)
    frames = []
    for i in range(1, n_frames + 1):
        with Image.open(folder / f"{i}.tif") as im:
            frames.append(np.asarray(im, np.float32) / 255.0)
    raw = np.stack(frames)
    values = bundle.core_values(raw, background=bg)
    tli = bundle.reconstruct(values)
    sr = super_resolve(model, tli, device="cpu", bundle=bundle, values=values)
    out_values = bundle.vectorize(sr).astype(np.float64)
    hood = _neighbourhood(bundle)
    ok = hood.interior

    def pattern(v: np.ndarray) -> tuple[float, float]:
        residual = np.stack([hood.highpass @ f for f in v])[:, ok]
        fixed = residual.mean(axis=0)
        return float(np.sqrt(np.mean(fixed**2))), float(np.sqrt(np.mean(residual**2)))

    fixed_in, all_in = pattern(values.astype(np.float64))
    fixed_out, all_out = pattern(out_values)
    # baselines: the cell means of the TLI image and of TLI + projection (no network)
    rows = [["input core values", f"{fixed_in:.4f}", f"{all_in:.4f}", "1.00"]]
    projected = np.stack(
        [project_consistent(f, bundle, v) for f, v in zip(tli, values, strict=True)]
    )
    for label, image in (("TLI cell means", tli), ("TLI + projection cell means", projected)):
        fixed, every = pattern(bundle.vectorize(image).astype(np.float64))
        rows.append([label, f"{fixed:.4f}", f"{every:.4f}", f"{fixed / fixed_in:.2f}"])
    log(f"  video: {n_frames} frames, fixed pattern in {fixed_in:.4f}, out {fixed_out:.4f}")
    rows.append(
        ["output cell means", f"{fixed_out:.4f}", f"{all_out:.4f}", f"{fixed_out / fixed_in:.2f}"]
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pretrained:default", help="file or pretrained:NAME")
    parser.add_argument("--frames", type=int, default=12, help="video frames (1-12)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    if not SHARED_DATA.is_dir():
        print(f"no real frames at {SHARED_DATA}")
        return 1
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:5.0f}s] {msg}", file=sys.stderr, flush=True)

    model = _load(args.model)
    rows = border_and_streaks(model, log)
    print(
        f"\nModel `{args.model}`; default single-frame result (network + noise-aware projection).\n"
    )
    print(
        markdown_table(
            [
                "frame",
                "inference",
                f"FOV px within {BORDER} px of the frame border",
                "RMS SR - TLI there",
                "max abs SR - TLI there",
                "RMS SR - TLI inside",
                "gradient ratio x/y of SR - TLI",
            ],
            rows,
        )
    )
    rows = fixed_pattern(model, max(2, min(12, args.frames)), log)
    print(
        f"\nFixed pattern on the USAF video ({args.frames} frames): RMS over the cores of the "
        "temporal mean of each core's neighbour residual (the part that stays while the scene "
        "moves), next to the RMS of all residuals.\n"
    )
    print(
        markdown_table(["values", "fixed pattern RMS", "all residuals RMS", "amplification"], rows)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
