"""Training speed per network preset, next to the machine's measured matmul peak.

For each preset ("tiny", "default", "paper") at its default batch size (16, 16, 54) and the
paper's 64 x 64 patches, runs a few real training iterations of :class:`Trainer` (natural
target, one D and one G step each) on a simulated pCLE image and reports:

* seconds per iteration (median of the iterations after the first, which warms up);
* the convolution/dense FLOPs of one iteration, counted with forward hooks and multiplied:
  generator forward + backward = 3 x its forward; discriminator on real and on fake patches
  (forward + backward) = 3 x each, and in the generator step forward + input gradient only
  (its weights are frozen) = 2 x; BatchNorm, activations and the loss are not counted;
* the achieved GFLOP/s, and the same machine's float32 matmul rate (``torch.mm`` of
  2048 x 2048, median of repeats, same thread count) as the practical peak.

With ``--quality`` it instead trains the "default" preset briefly (batch 8) under several
settings (adversarial weight, ``normalise_vec``, the paper's l_vec padding, ``residual``,
discriminator noise) on simulated pCLE of three texture images (brick, coins, grass) and
reports, on a held-out simulated
image, the PSNR of the SR output and of the TLI input against the true HR image (inside the
FOV), and the cycle error (RMS of the Voronoi cell means of the SR output minus the measured
fibre values, in the HR image's [0, 1] units). This is a short check to choose defaults, not
the evidence tables (see ``benchmarks/run_experiments.py``).

Usage::

    python benchmarks/bench_training.py                 # all presets
    python benchmarks/bench_training.py --presets tiny default --iterations 6
    python benchmarks/bench_training.py --threads 2
    python benchmarks/bench_training.py --presets tiny default --compare   # layouts, compile
    python benchmarks/bench_training.py --quality --iterations 150 --threads 1
    python benchmarks/bench_training.py --quality --settings w_adv_1 w_adv_1e-3

Figures are indicative when the machine is shared with other jobs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

from napari_cycsr.models import Discriminator, Generator, get_preset
from napari_cycsr.simulate import simulate_pcle
from napari_cycsr.training import TrainConfig, Trainer

DEFAULT_ITERATIONS = {"tiny": 8, "default": 6, "paper": 3}


def forward_flops(module: nn.Module, x: torch.Tensor) -> float:
    """Multiply-add FLOPs (2 per MAC) of the Conv2d and Linear layers in one forward."""
    total = 0.0

    def conv_hook(layer: nn.Conv2d, _inputs, output) -> None:  # noqa: ANN001
        nonlocal total
        kh, kw = layer.kernel_size
        macs_per_output = layer.in_channels // layer.groups * kh * kw
        total += 2.0 * output.numel() * macs_per_output

    def linear_hook(layer: nn.Linear, _inputs, output) -> None:  # noqa: ANN001
        nonlocal total
        total += 2.0 * output.numel() * layer.in_features

    handles = []
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            handles.append(layer.register_forward_hook(conv_hook))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(linear_hook))
    with torch.no_grad():
        module.eval()(x)
    for h in handles:
        h.remove()
    return total


def iteration_flops(preset: str, batch: int, patch: int) -> float:
    """FLOPs of one training iteration (see the module docstring for the accounting)."""
    config = get_preset(preset)
    g_flops = forward_flops(Generator(config), torch.zeros(batch, 1, patch, patch))
    d_flops = forward_flops(Discriminator(config), torch.zeros(batch, 1, patch, patch))
    return 3 * g_flops + (3 + 3 + 2) * d_flops


def matmul_gflops(n: int = 2048, repeats: int = 7) -> float:
    """Median float32 ``torch.mm`` rate of this machine, in GFLOP/s."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def time_training(
    preset: str,
    iterations: int,
    sim,  # noqa: ANN001
    precision: str = "fp32",
    *,
    layout: str = "channels_last",
    compile_: bool = False,
) -> tuple[float, int]:
    """Median seconds per iteration (after the first) and the batch size used.

    ``layout="nchw"`` trains in torch's default layout instead of channels-last (NHWC);
    ``compile_`` wraps both networks in :func:`torch.compile` (the first iteration then
    includes the compilation).
    """
    from napari_cycsr import training

    real_format = training.memory_format
    if layout == "nchw":
        training.memory_format = lambda device: torch.contiguous_format
    config = TrainConfig(
        preset=preset,
        iterations=iterations,
        device="cpu",
        precision=precision,
        threads=torch.get_num_threads(),  # the benchmark's --threads, not the load policy
        preview_every=0,
        checkpoint_every=0,
    )
    try:
        trainer = Trainer(sim.lr, sim.bundle, config=config, values=sim.values)
    finally:
        training.memory_format = real_format
    if compile_:
        trainer._g_step_module = torch.compile(trainer._g)
        trainer._d_step_module = torch.compile(trainer._d)
    durations = []
    last = time.perf_counter()
    for _ in trainer.run():
        now = time.perf_counter()
        durations.append(now - last)
        last = now
    if compile_:  # steady state: the second half (recompilations settle in the first)
        return statistics.median(durations[len(durations) // 2 :]), durations[0]
    return statistics.median(durations[1:] or durations), config.effective_batch_size


def compare_speedups(presets: list[str], iterations: int, repeats: int, sim) -> None:  # noqa: ANN001
    """channels-last against NCHW, and torch.compile against eager, in one run.

    The compilation uses a fresh, empty inductor cache (as a user's first run does).
    """
    import os
    import tempfile

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="cycsr-bench-inductor-")
    print(f"\ntraining layouts and torch.compile (median s/iteration of {repeats} runs)")
    print(f"{'preset':<8} {'NCHW':>8} {'NHWC':>8} {'NHWC/NCHW':>10} {'compiled':>9} "
          f"{'compile s':>10}")  # fmt: skip
    for preset in presets:
        times: dict[str, list[float]] = {"nchw": [], "channels_last": []}
        for _ in range(repeats):  # interleaved, so that load changes hit both alike
            for layout in times:
                times[layout].append(time_training(preset, iterations, sim, layout=layout)[0])
        nchw = statistics.median(times["nchw"])
        nhwc = statistics.median(times["channels_last"])
        compiled, first = time_training(preset, 3 * iterations, sim, compile_=True)
        print(
            f"{preset:<8} {nchw:>8.3f} {nhwc:>8.3f} {nchw / nhwc:>9.2f}x {compiled:>9.3f} "
            f"{first - nhwc:>10.1f}",
            flush=True,
        )


#: Settings compared by ``--quality`` (TrainConfig overrides of the default run).
#: Every entry names all fields it changes, so that the table in docs/method.md is reproduced
#: whatever the current defaults (the runs there used noise_sigma=0.05 unless stated).
QUALITY_SETTINGS: dict[str, dict] = {
    "w_adv_1": {"w_adv": 1.0, "noise_sigma": 0.05},  # the paper's weights 1, 1, 1
    "w_adv_1+normalise_vec": {"w_adv": 1.0, "noise_sigma": 0.05, "normalise_vec": True},
    "w_adv_1+paper_vec": {
        "w_adv": 1.0,
        "noise_sigma": 0.05,
        "normalise_vec": True,
        "paper_padding": True,
    },
    "w_adv_1e-2": {"w_adv": 1e-2, "noise_sigma": 0.05},
    "w_adv_1e-3": {"w_adv": 1e-3, "noise_sigma": 0.05},
    "no_adversary": {"w_adv": 0.0, "noise_sigma": 0.05},
    "not_residual": {"w_adv": 1e-3, "noise_sigma": 0.05, "residual": False},
    "noise_0": {"w_adv": 1e-3, "noise_sigma": 0.0},
    "noise_0.2": {"w_adv": 1e-3, "noise_sigma": 0.2},  # the defaults
}


def _grey(name: str, y0: int, x0: int, size: int) -> np.ndarray:
    from skimage import color, data, util

    image = getattr(data, name)()
    if image.ndim == 3:
        image = color.rgb2gray(image[..., :3])
    return util.img_as_float32(image)[y0 : y0 + size, x0 : x0 + size]


def quality(settings: list[str], iterations: int, batch: int, seed: int) -> None:
    """Train the default preset under each setting; PSNR and cycle error on held-out data."""
    from napari_cycsr.metrics import psnr

    train_sims = [
        simulate_pcle(_grey("brick", 0, 0, 256), seed=1),
        simulate_pcle(_grey("coins", 20, 60, 256), seed=2),
        simulate_pcle(_grey("grass", 0, 0, 256), seed=3),
    ]
    test = simulate_pcle(_grey("gravel", 100, 100, 256), seed=4)
    mask = test.bundle.fov_mask
    print(
        f"held-out: gravel 256x256, {test.bundle.n_fibres} fibres; TLI PSNR "
        f"{psnr(test.lr, test.hr, mask=mask, data_range=1.0):.2f} dB"
    )
    print(
        f"{'setting':<22} {'PSNR SR':>8} {'PSNR TLI':>8} {'cycle RMS':>9} {'TLI cycle':>9} "
        f"{'l_vec':>9} {'l_adv':>6} {'D acc':>6} {'s/iter':>7}"
    )
    tli_cycle = float(np.sqrt(np.nanmean((test.bundle.vectorize(test.lr) - test.values) ** 2)))
    for name in settings:
        config = TrainConfig(
            preset="default",
            iterations=iterations,
            batch_size=batch,
            device="cpu",
            preview_every=0,
            checkpoint_every=0,
            seed=seed,
            **QUALITY_SETTINGS[name],
        )
        trainer = Trainer(
            [s.lr for s in train_sims],
            [s.bundle for s in train_sims],
            config=config,
            values=[s.values for s in train_sims],
        )
        started = time.perf_counter()
        events = list(trainer.run())
        spi = (time.perf_counter() - started) / iterations
        model = trainer.model
        with torch.no_grad():
            x = torch.from_numpy(model.normalise(test.lr.astype(np.float32)))[None, None]
            sr = model.denormalise(model.generator(x)[0, 0].numpy())
        sr_cycle = float(np.sqrt(np.nanmean((test.bundle.vectorize(sr) - test.values) ** 2)))
        tail = events[-max(1, iterations // 5) :]
        mean = {k: float(np.nanmean([e.losses[k] for e in tail])) for k in ("l_vec", "l_adv")}
        acc = float(np.nanmean([e.d_accuracy for e in tail]))
        print(
            f"{name:<22} {psnr(sr, test.hr, mask=mask, data_range=1.0):>8.2f} "
            f"{psnr(test.lr, test.hr, mask=mask, data_range=1.0):>8.2f} {sr_cycle:>9.4f} "
            f"{tli_cycle:>9.4f} {mean['l_vec']:>9.2e} {mean['l_adv']:>6.2f} {acc:>6.2f} "
            f"{spi:>7.2f}",
            flush=True,
        )


def sampling_seconds(sim, batch: int, repeats: int = 20) -> float:  # noqa: ANN001
    """Median time to draw one LR batch (with its cells) plus one natural-image target batch."""
    from napari_cycsr.data import LRPatchSampler, TargetSampler

    rng = np.random.default_rng(0)
    lr = LRPatchSampler(sim.lr, sim.bundle, patch=64, values=sim.values, rng=rng)
    target = TargetSampler("natural", patch=64, rng=rng)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        lr.sample(batch)
        target.sample(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default", "paper"])
    parser.add_argument("--iterations", type=int, default=None, help="per preset (default 8/6/3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "auto"],
        help="precision of the timed runs (default fp32; bench_precision.py compares)",
    )  # fmt: skip
    parser.add_argument(
        "--compare", action="store_true",
        help="also time NCHW against channels-last training and torch.compile against eager",
    )  # fmt: skip
    parser.add_argument("--quality", action="store_true", help="short quality check instead")
    parser.add_argument(
        "--settings", nargs="+", default=list(QUALITY_SETTINGS), choices=list(QUALITY_SETTINGS)
    )
    parser.add_argument("--batch", type=int, default=8, help="--quality batch size")
    parser.add_argument("--seed", type=int, default=0, help="--quality seed")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quality:
        quality(args.settings, args.iterations or 150, args.batch, args.seed)
        return
    from skimage import data

    sim = simulate_pcle(data.camera()[128:384, 128:384], seed=0)
    peak = matmul_gflops()
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); float32 matmul (2048^2) {peak:.1f} GFLOP/s"
    )
    for batch in (16, 54):
        print(
            f"patch sampling (LR + cells + target), batch {batch}: "
            f"{1000 * sampling_seconds(sim, batch):.1f} ms"
        )
    print(
        f"{'preset':<8} {'batch':>5} {'s/iter':>8} {'GFLOP/iter':>11} {'GFLOP/s':>8} {'% of mm':>8}"
    )
    for preset in args.presets:
        iterations = args.iterations or DEFAULT_ITERATIONS.get(preset, 4)
        seconds, batch = time_training(preset, max(iterations, 2), sim, args.precision)
        flops = iteration_flops(preset, batch, 64)
        rate = flops / seconds / 1e9
        print(
            f"{preset:<8} {batch:>5} {seconds:>8.3f} {flops / 1e9:>11.1f} {rate:>8.1f} "
            f"{100 * rate / peak:>7.0f}%"
        )
    if args.compare:
        presets = [p for p in args.presets if p != "paper"]
        compare_speedups(presets, args.iterations or 6, 2, sim)


if __name__ == "__main__":
    main()
