"""Mixed precision: bf16 against fp32, speed and quality, measured in one run.

Speed (``--speed``, the default part): for each preset, seconds per training iteration
(real :class:`Trainer` iterations, batch 16 of 64 x 64 patches) and seconds per 576 x 576
inference frame, in float32 and under bfloat16 autocast, side by side with this CPU's
matmul rate in both precisions (2048^3 ``torch.mm``, the practical peak) so that every
figure is also given as a percentage of the peak of its precision.

Quality (``--quality``):

* inference parity: one model (``--infer-preset``, default "default") trained in float32
  on the benchmark training images (``benchmarks/run_experiments.py`` data, default mode)
  super-resolves every held-out test crop in float32 and in bfloat16; the table gives the
  PSNR of both against the true image and their difference (aim: within 0.05 dB);
* training parity: the same short training run (``--preset``, default "tiny") in float32
  and in bfloat16 for several seeds; the ``l_vec`` curve, its last fifth and the test PSNR
  of every run, so that the fp32-bf16 gap can be compared with the spread between seeds.

Probe (``--probe N``): the one-off timing by which ``precision="auto"`` decides whether
bfloat16 pays on this CPU (``_device._bf16_speedup``), run in N fresh processes (the
decision is taken once per process, on its first timing) in one thread, as ``auto`` runs it,
and with torch's own threads (as it ran before 2026-12-01, evening), alternately; printed:
every ratio and how many processes would choose bfloat16 (ratio >= ``BF16_MIN_SPEEDUP``).
Run it beside another job to see what load does to the decision.

bfloat16 is computed natively only by CPUs with AMX or AVX-512 BF16; elsewhere torch
emulates it (correct numbers, many times slower). The script says which applies; quality
figures measured under emulation are valid (the same bfloat16 roundings, float32
accumulation), speed figures are not representative of bfloat16 hardware.

Run from the repository root::

    python benchmarks/bench_precision.py --speed --presets tiny default
    python benchmarks/bench_precision.py --quality --seeds 0 1 2 --iterations 150
    python benchmarks/bench_precision.py --probe 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from napari_cycsr import _device  # noqa: E402
from napari_cycsr.inference import super_resolve  # noqa: E402
from napari_cycsr.models import SRModel  # noqa: E402
from napari_cycsr.simulate import simulate_pcle  # noqa: E402
from napari_cycsr.training import TrainConfig, Trainer  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def _median_time(fn, repeats: int, warmup: int = 1) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 3) -> float:
    """``torch.mm`` rate of this CPU in ``dtype`` (GFLOP/s)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / _median_time(lambda: torch.mm(a, b), repeats) / 1e9


def training_seconds(preset: str, precision: str, iterations: int, sim) -> float:  # noqa: ANN001
    config = TrainConfig(
        preset=preset, iterations=iterations + 1, batch_size=16, device="cpu",
        precision=precision, threads=torch.get_num_threads(), preview_every=0,
        checkpoint_every=0,
    )  # fmt: skip
    trainer = Trainer(sim.lr, sim.bundle, config=config, values=sim.values)
    times, last = [], time.perf_counter()
    for _ in trainer.run():
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return statistics.median(times[1:])


def inference_seconds(preset: str, precision: str, repeats: int) -> float:
    torch.manual_seed(0)
    model = SRModel.new(preset)
    image = np.random.default_rng(0).random((576, 576), dtype=np.float32)
    threads = torch.get_num_threads()
    return _median_time(
        lambda: super_resolve(
            model, image, device="cpu", precision=precision, threads=threads, ensemble=1
        ),
        repeats,
    )


def _flops(preset: str) -> tuple[float, float]:
    """(training GFLOP / iteration at batch 16, inference GFLOP / 576^2 frame)."""
    from bench_inference import generator_flops
    from bench_training import iteration_flops

    return iteration_flops(preset, 16, 64) / 1e9, generator_flops(
        SRModel.new(preset), 576, 576
    ) / 1e9


def speed(presets: list[str], iterations: int, repeats: int) -> None:
    from skimage import data

    sim = simulate_pcle(data.camera()[128:384, 128:384], seed=0)
    peak = {p: matmul_gflops(torch.float32 if p == "fp32" else torch.bfloat16) for p in PRECISIONS}
    print(
        f"matmul 2048^3: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s "
        f"(x{peak['bf16'] / peak['fp32']:.2f})"
    )
    print(
        f"{'preset':<8} {'work':<10} {'fp32 s':>8} {'%peak':>6} {'bf16 s':>8} {'%peak':>6} "
        f"{'bf16 speed-up':>13}"
    )
    for preset in presets:
        train_gflop, infer_gflop = _flops(preset)
        n = iterations if preset != "paper" else max(2, iterations // 3)
        rows = {
            "training": {p: training_seconds(preset, p, n, sim) for p in PRECISIONS},
            "inference": {p: inference_seconds(preset, p, repeats) for p in PRECISIONS},
        }
        for work, secs in rows.items():
            gflop = train_gflop if work == "training" else infer_gflop
            pct = {p: 100 * gflop / secs[p] / peak[p] for p in PRECISIONS}
            print(
                f"{preset:<8} {work:<10} {secs['fp32']:>8.3f} {pct['fp32']:>5.0f}% "
                f"{secs['bf16']:>8.3f} {pct['bf16']:>5.0f}% {secs['fp32'] / secs['bf16']:>12.2f}x",
                flush=True,
            )


def quality(
    seeds: list[int], iterations: int, preset: str, infer_preset: str, infer_iterations: int,
    batch: int, patch: int,
) -> None:  # fmt: skip
    from napari_cycsr.metrics import psnr
    from run_experiments import MODES, build_data

    data = build_data(MODES["default"], 0)
    lr = [s.lr for s in data.train]
    bundles = [s.bundle for s in data.train]
    values = [s.values for s in data.train]
    print(
        f"training images {len(data.train)}, test crops {len(data.test)}; batch {batch}, "
        f"patch {patch}, natural-image target"
    )

    def train(preset_: str, n: int, seed: int, precision: str) -> tuple[SRModel, list, float]:
        config = TrainConfig(
            preset=preset_, iterations=n, batch_size=batch, patch=patch, seed=seed,
            device="cpu", precision=precision, threads=torch.get_num_threads(),
            preview_every=0, checkpoint_every=0,
        )  # fmt: skip
        trainer = Trainer(lr, bundles, "images", config, values=values,
                          target_images=data.natural)  # fmt: skip
        start = time.perf_counter()
        events = list(trainer.run())
        return trainer.model, events, time.perf_counter() - start

    def test_psnr(model: SRModel, precision: str) -> list[float]:
        out = []
        for sim in data.test:
            sr = super_resolve(model, sim.lr, device="cpu", mask=sim.mask, precision=precision,
                               threads=torch.get_num_threads())  # fmt: skip
            out.append(psnr(sr, sim.hr, mask=sim.mask, data_range=1.0))
        return out

    tli = [psnr(s.lr, s.hr, mask=s.mask, data_range=1.0) for s in data.test]
    print(f"TLI input: {np.mean(tli):.3f} dB")

    # inference parity: one float32-trained model, its output in float32 and in bfloat16
    model, _, seconds = train(infer_preset, infer_iterations, seeds[0], "fp32")
    print(f"\ninference parity: {infer_preset} preset, {infer_iterations} iterations in fp32 "
          f"(seed {seeds[0]}, {seconds:.0f} s)")  # fmt: skip
    p32, p16 = test_psnr(model, "fp32"), test_psnr(model, "bf16")
    diff = np.array(p16) - np.array(p32)
    for name, a, b in zip(data.test_names, p32, p16):
        print(f"  {name:<10} fp32 {a:.3f} dB  bf16 {b:.3f} dB  difference {b - a:+.4f} dB")
    print(
        f"  mean: fp32 {np.mean(p32):.4f} dB, bf16 {np.mean(p16):.4f} dB, difference "
        f"{diff.mean():+.4f} dB (largest |difference| {np.abs(diff).max():.4f} dB)"
    )

    # training parity: the same run in both precisions, several seeds
    print(f"\ntraining parity: {preset} preset, {iterations} iterations per run")
    runs: dict[str, list[dict]] = {p: [] for p in PRECISIONS}
    for seed in seeds:
        for precision in PRECISIONS:
            model, events, seconds = train(preset, iterations, seed, precision)
            curve = np.array([e.losses["l_vec"] for e in events])
            tail = curve[-max(1, iterations // 5) :]
            scores = test_psnr(model, "fp32")
            runs[precision].append(
                {"seed": seed, "l_vec": float(tail.mean()), "psnr": float(np.mean(scores)),
                 "curve": curve}
            )  # fmt: skip
            print(
                f"  seed {seed} {precision}: last-fifth l_vec {tail.mean():.4e}, test PSNR "
                f"{np.mean(scores):.3f} dB, {seconds:.0f} s",
                flush=True,
            )
    print("  mean +- sd over seeds; bf16 - fp32 per seed:")
    for key in ("l_vec", "psnr"):
        line = f"  {key:<6}"
        for precision in PRECISIONS:
            vals = [r[key] for r in runs[precision]]
            sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            line += f"  {precision} {np.mean(vals):.4g} +- {sd:.2g}"
        gaps = [b[key] - a[key] for a, b in zip(runs["fp32"], runs["bf16"])]
        line += f"  | {', '.join(f'{g:+.3g}' for g in gaps)}"
        print(line)
    # the curves: l_vec averaged over windows of a tenth of the run
    edges = np.unique(np.linspace(0, iterations, 11).astype(int))
    print("  l_vec curve (window means; fp32 seeds min..max | bf16 seeds min..max):")
    for a, b in zip(edges[:-1], edges[1:]):
        cells = []
        for precision in PRECISIONS:
            means = [float(r["curve"][a:b].mean()) for r in runs[precision]]
            cells.append(f"{min(means):.3e}..{max(means):.3e}")
        print(f"    it {a + 1:>4}-{b:<4} fp32 {cells[0]} | bf16 {cells[1]}")


_PROBE_CODE = (
    "import sys; from napari_cycsr import _device; "
    "t = None if sys.argv[1] == 'torch' else int(sys.argv[1]); "
    "print(_device._bf16_speedup(threads=t))"
)


def probe(count: int) -> dict[str, list[float]]:
    """``_device._bf16_speedup`` in ``count`` fresh processes, one thread and torch's threads."""
    import subprocess

    modes = {"one thread (auto)": "1", "torch's threads": "torch"}
    ratios: dict[str, list[float]] = {label: [] for label in modes}
    for _ in range(count):
        for label, arg in modes.items():
            out = subprocess.run(
                [sys.executable, "-c", _PROBE_CODE, arg],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            ratios[label].append(float(out.split()[-1]))
    threshold = _device.BF16_MIN_SPEEDUP
    for label, values in ratios.items():
        chose = sum(v >= threshold for v in values)
        print(
            f"{label:26s} float32 / bfloat16 time: "
            + " ".join(f"{v:.2f}" for v in values)
            + f"  (median {statistics.median(values):.2f}; bf16 chosen in {chose} of "
            f"{len(values)} processes, threshold {threshold:g})"
        )
    return ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="timings (default if no part given)")
    parser.add_argument("--quality", action="store_true", help="inference and training parity")
    parser.add_argument(
        "--probe",
        type=int,
        default=0,
        metavar="N",
        help="the 'auto' precision check in N fresh processes, one thread and torch's threads",
    )
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="speed: timed iterations (default 4); quality: per run (default 60)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="speed: inference repeats")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--preset", default="tiny", help="quality: preset of the training runs")
    parser.add_argument("--infer-preset", default="default",
                        help="quality: preset of the model of the inference parity")
    parser.add_argument("--infer-iterations", type=int, default=150,
                        help="quality: its training iterations (fp32)")
    parser.add_argument("--batch", type=int, default=8, help="quality: batch size")
    parser.add_argument("--patch", type=int, default=64, help="quality: patch side")
    args = parser.parse_args(argv)  # fmt: skip
    if args.threads:
        torch.set_num_threads(args.threads)
    native = _device.cpu_has_native_bf16()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; native bfloat16 (AMX / AVX-512 BF16): "
        + ("yes" if native else "NO: bfloat16 is emulated here, its timings are not representative")
    )
    warnings.filterwarnings("ignore", message=".*emulated.*")
    if args.probe < 0:
        parser.error("--probe needs a count >= 1")
    if args.probe:
        probe(args.probe)
    if args.speed or not (args.quality or args.probe):
        speed(args.presets, args.iterations or 4, args.repeats)
    if args.quality:
        quality(args.seeds, args.iterations or 150, args.preset, args.infer_preset,
                args.infer_iterations, args.batch, args.patch)  # fmt: skip


if __name__ == "__main__":
    main()
