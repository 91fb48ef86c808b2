"""Inference speed and memory of napari-cycsr's generator presets on this machine (CPU).

Prints, side by side:

* this CPU's dense float32 throughput: a large ``torch.matmul`` and a 64-channel 3x3 conv
  (GFLOP/s; the practical peak for the generator's arithmetic);
* for each preset ("tiny", "default", "paper"): frames per second on one 576 x 576 frame
  (median of repeats), the generator's FLOPs per frame (counted from its conv layers) and the
  GFLOP/s achieved;
* the peak memory (RSS increase, measured in a fresh subprocess) of tiled inference of one
  4096 x 4096 image with the "default" preset (automatic 512 px tiles).

Run from the repository root::

    .venv/bin/python benchmarks/bench_inference.py          # ~4 min on 2 idle cores
    .venv/bin/python benchmarks/bench_inference.py --quick  # 1-3 repeats, 2048^2: ~1.5 min
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from napari_cycsr.inference import AUTO_TILE, receptive_radius, super_resolve
from napari_cycsr.models import SRModel, get_preset

GIB = 1024**3


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time (s) of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(n: int, repeats: int) -> float:
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    seconds = median_time(lambda: torch.matmul(a, b), repeats)
    return 2 * n**3 / seconds / 1e9


def conv_gflops(channels: int, size: int, repeats: int) -> float:
    # channels-last (NHWC), the layout super_resolve uses on CPU
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval()
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(1, channels, size, size).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds = median_time(lambda: conv(x), repeats)
    return 2 * channels * channels * 9 * size * size / seconds / 1e9


def generator_flops(model: SRModel, height: int, width: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of the generator's conv layers for one frame."""
    total = 0

    def count(module: nn.Conv2d, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        macs = output.numel() * (module.in_channels // module.groups) * kh * kw
        total += 2 * macs

    net = model.generator.eval()
    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            net(torch.zeros(1, 1, height, width))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def layout_comparison(preset: str, size: int, repeats: int) -> dict[str, float]:
    """Median seconds of one generator pass: as built (NCHW), channels-last (NHWC), and
    channels-last with BatchNorm folded into the convs (the network super_resolve runs)."""
    import copy

    from napari_cycsr.inference import _prepare_network

    model = make_model(preset)
    x = torch.rand(1, 1, size, size)
    x_nhwc = x.to(memory_format=torch.channels_last)
    nchw = model.generator
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    folded = _prepare_network(model, torch.device("cpu"))
    times = {}
    with torch.inference_mode():
        times["NCHW"] = median_time(lambda: nchw(x), repeats)
        times["NHWC"] = median_time(lambda: nhwc(x_nhwc), repeats)
        times["NHWC + folded BN (used)"] = median_time(lambda: folded(x_nhwc), repeats)
    return times


def make_model(preset: str) -> SRModel:
    torch.manual_seed(0)
    model = SRModel.new(preset)
    with torch.no_grad():  # a non-trivial tail (it starts at zero for residual models)
        nn.init.normal_(model.generator.tail.weight, std=0.01)
    model.generator.eval()
    return model


def memory_child(size: int, preset: str, with_mask: bool = False) -> None:
    """Run in a fresh process: print JSON with the RSS increase of one tiled inference
    (``with_mask``: with a circular field-of-view mask, so the outside fill is included)."""
    import gc
    import resource

    try:
        import psutil

        def rss() -> int:
            return psutil.Process().memory_info().rss

    except ImportError:  # pragma: no cover - psutil ships with napari's dependencies

        def rss() -> int:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    model = make_model(preset)
    image = np.random.default_rng(0).random((size, size), dtype=np.float32)
    mask = None
    if with_mask:
        yy, xx = np.ogrid[:size, :size]
        mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.48 * size) ** 2
    run = {"device": "cpu", "precision": "fp32", "threads": torch.get_num_threads(), "ensemble": 1}
    super_resolve(model, image[:64, :64], **run)  # load kernels, allocator warm-up
    gc.collect()
    before = rss()
    start = time.perf_counter()
    out = super_resolve(model, image, mask=mask, **run)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    flops = generator_flops(model, 64, 64) / (64 * 64) * size * size  # per-pixel cost x pixels
    print(
        json.dumps(
            {
                "before_bytes": before,
                "peak_bytes": peak,
                "increase_bytes": peak - before,
                "output_bytes": out.nbytes,
                "seconds": seconds,
                "useful_gflops": flops / seconds / 1e9,
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    parser.add_argument("--size", type=int, default=576, help="frame size for frames/s")
    parser.add_argument(
        "--memory-size",
        type=int,
        default=None,
        help="image side for the memory run (4096; 2048 with --quick)",
    )
    parser.add_argument("--presets", nargs="+", default=["tiny", "default", "paper"])
    parser.add_argument(
        "--ensemble",
        type=int,
        nargs="+",
        default=[1],
        metavar="N",
        help="self-ensemble sizes to time (default 1: the network once per frame; "
        "super_resolve's default is 4)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocess")
    parser.add_argument(
        "--memory-mask",
        action="store_true",
        help="give the memory run a circular field-of-view mask (measures the outside fill)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "auto"],
        help="precision of the frames/s runs (default fp32; bench_precision.py compares)",
    )  # fmt: skip
    parser.add_argument(
        "--compare-layout",
        action="store_true",
        help="also time the 'default' generator: NCHW, NHWC, NHWC with BatchNorm folded",
    )
    parser.add_argument(
        "--memory-child", nargs=3, metavar=("SIZE", "PRESET", "MASK"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        size, preset, mask = args.memory_child
        memory_child(int(size), preset, mask == "mask")
        return 0

    repeats = 3 if args.quick else 5
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, {args.precision}")
    peak_mm = matmul_gflops(2048, repeats)
    peak_conv = conv_gflops(64, 256, repeats)
    print(
        f"peak: matmul 2048^3 {peak_mm:7.1f} GFLOP/s | conv 64->64 3x3 NHWC on 256^2 "
        f"{peak_conv:7.1f} GFLOP/s  (median of {repeats})"
    )

    size = args.size
    frame = np.random.default_rng(0).random((size, size), dtype=np.float32)
    print(f"\nwhole-frame inference, {size}x{size}, device=cpu")
    print(
        f"{'preset':>8} {'ch':>3} {'blocks':>6} {'radius':>6} {'ensemble':>8} {'GFLOP/frame':>11} "
        f"{'s/frame':>8} {'frames/s':>8} {'GFLOP/s':>8} {'% matmul':>8}"
    )
    for preset in args.presets:
        model = make_model(preset)
        config = get_preset(preset)
        for members in args.ensemble:
            flops = generator_flops(model, size, size) * members
            n = min(repeats, 1 if args.quick else 3) if preset == "paper" else repeats  # slow
            run = {
                "device": "cpu",
                "precision": args.precision,
                "threads": torch.get_num_threads(),
                "ensemble": members,
            }
            seconds = median_time(lambda m=model, r=run: super_resolve(m, frame, **r), n)
            achieved = flops / seconds / 1e9
            print(
                f"{preset:>8} {config.channels:>3} {config.blocks:>6} "
                f"{receptive_radius(model):>6} {members:>8} {flops / 1e9:>11.2f} {seconds:>8.3f} "
                f"{1 / seconds:>8.2f} {achieved:>8.1f} {100 * achieved / peak_mm:>7.0f}%"
            )

    if args.compare_layout:
        times = layout_comparison("default", size, repeats)
        base = times["NCHW"]
        print(f"\none generator pass, preset 'default', {size}x{size} (median of {repeats}):")
        for name, seconds in times.items():
            print(f"  {name:<24} {seconds:7.3f} s   x{base / seconds:.2f} vs NCHW")

    if not args.no_memory:
        m = args.memory_size or (2048 if args.quick else 4096)
        print(
            f"\ntiled inference of one {m}x{m} float32 image, preset 'default', "
            f"automatic tiles of {AUTO_TILE} px (fresh subprocess"
            + (", circular field-of-view mask)" if args.memory_mask else ")")
        )
        child = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(m), "default"]
            + ["mask" if args.memory_mask else "nomask"]
            + (["--threads", str(args.threads)] if args.threads else []),
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"  peak RSS increase {result['increase_bytes'] / GIB:.2f} GiB "
            f"(of which output array {result['output_bytes'] / GIB:.2f} GiB; target < 2 GiB), "
            f"{result['seconds']:.1f} s, {result['useful_gflops']:.1f} useful GFLOP/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
