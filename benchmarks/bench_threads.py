"""CPU threads on an idle and on a loaded machine: one thread against the defaults.

Each configuration runs in a fresh Python process (the OpenMP runtime reads its wait policy
once, when torch loads), on an idle machine and with ``--load N`` competing CPU-bound
processes (``python -c "while True: pass"``) started by this script on the same CPUs:

* ``1 thread``: ``torch.set_num_threads(1)``;
* ``torch default, spinning``: torch's own thread count (one per core) and the OpenMP
  runtime's default wait policy (idle threads spin a while), as napari-cycsr ran before its
  thread policy (torch is imported before napari_cycsr, so nothing is changed);
* ``all threads, passive``: torch's thread count with ``OMP_WAIT_POLICY=PASSIVE``;
* ``napari-cycsr default``: what the library and ``cycsr`` now do (passive OpenMP threads,
  as many threads as the CPUs other processes leave free: ``napari_cycsr._device``).

The work is either real training iterations (``Trainer``, natural target, batch 16, 64 x 64
patches; seconds per iteration, median after a warm-up iteration) or whole-frame inference
of a 576 x 576 image (seconds per frame, median). Configurations are interleaved and
repeated (``--repeats``); the table gives the median over repeats and the ratio to
``1 thread`` measured under the same load in the same run.

Run from the repository root (CPU time: about 10 min with the defaults on 2 cores)::

    python benchmarks/bench_threads.py                              # idle and 1 competing process
    python benchmarks/bench_threads.py --load 0 2 --presets tiny --work infer
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = ("1 thread", "torch default, spinning", "all threads, passive", "napari-cycsr default")
_HERE = Path(__file__).resolve().parent


def _worker(config: str, preset: str, work: str, iterations: int) -> dict:
    """Run in the child process: set up threads as ``config`` says, time the work."""
    if config == "torch default, spinning":
        import torch  # before napari_cycsr: the OpenMP defaults are not applied
    import numpy as np
    import torch

    import napari_cycsr  # noqa: F401  (applies the OpenMP defaults when torch is not loaded)
    from napari_cycsr import _device

    threads: int | None
    if config == "1 thread":
        threads = 1
    elif config == "napari-cycsr default":
        threads = None
    else:
        threads = torch.get_num_threads()
    if work == "train":
        from skimage import data

        from napari_cycsr.simulate import simulate_pcle
        from napari_cycsr.training import TrainConfig, Trainer

        sim = simulate_pcle(data.camera()[128:384, 128:384], seed=0)
        cfg = TrainConfig(
            preset=preset, iterations=iterations + 1, batch_size=16, device="cpu",
            precision="fp32", threads=threads, preview_every=0, checkpoint_every=0,
        )  # fmt: skip
        trainer = Trainer(sim.lr, sim.bundle, config=cfg, values=sim.values)
        times, last = [], time.perf_counter()
        used = None
        for _ in trainer.run():
            used = torch.get_num_threads()
            now = time.perf_counter()
            times.append(now - last)
            last = now
        seconds = statistics.median(times[1:])
    else:
        from napari_cycsr.inference import super_resolve
        from napari_cycsr.models import SRModel

        torch.manual_seed(0)
        model = SRModel.new(preset)
        model.generator.eval()
        image = np.random.default_rng(0).random((576, 576), dtype=np.float32)
        times = []
        for _ in range(iterations + 1):
            start = time.perf_counter()
            super_resolve(model, image, device="cpu", precision="fp32", threads=threads)
            times.append(time.perf_counter() - start)
        with _device.thread_scope(threads) as used:
            pass
        seconds = statistics.median(times[1:])
    return {
        "seconds": seconds,
        "threads": used,
        "passive": _device.openmp_passive(),
        "wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
    }


def _run_child(config: str, preset: str, work: str, iterations: int) -> dict:
    env = dict(os.environ)
    env.pop("CYCSR_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    if config == "all threads, passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        env.pop("OMP_WAIT_POLICY", None)
        env.pop("KMP_BLOCKTIME", None)
    args = [sys.executable, str(Path(__file__).resolve()), "--child", config, preset, work]
    args += ["--iterations", str(iterations)]
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{config} / {preset} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _start_load(n: int) -> list[subprocess.Popen]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(1.0)
    return hogs


def _stop_load(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.kill()
    for hog in hogs:
        hog.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"])
    parser.add_argument("--work", choices=["train", "infer"], default="train")
    parser.add_argument(
        "--load",
        nargs="+",
        type=int,
        default=[0, 1],
        help="numbers of competing busy processes (default: 0 and 1)",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="timed iterations / frames per run (default: tiny 12, else 4)",
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)  # fmt: skip
    if args.child:
        config, preset, work = args.child
        print(json.dumps(_worker(config, preset, work, args.iterations or 4)))
        return

    import torch

    print(
        f"{os.cpu_count()} CPUs (affinity {len(os.sched_getaffinity(0))}), torch "
        f"{torch.__version__}, torch default threads {torch.get_num_threads()}; work: "
        f"{args.work}, {args.repeats} repeat(s), each configuration in a fresh process",
        flush=True,
    )
    results: dict = {}
    for load in args.load:
        hogs = _start_load(load)
        try:
            for preset in args.presets:
                iterations = args.iterations or (12 if preset == "tiny" else 4)
                for _ in range(args.repeats):
                    for config in args.configs:
                        row = _run_child(config, preset, args.work, iterations)
                        key = (load, preset, config)
                        results.setdefault(key, []).append(row)
                        print(
                            f"  load {load} {preset:<8} {config:<24} {row['seconds']:.3f} s "
                            f"({row['threads']} thread(s), OMP_WAIT_POLICY "
                            f"{row['wait_policy']})",
                            flush=True,
                        )
        finally:
            _stop_load(hogs)

    unit = "s / iteration" if args.work == "train" else "s / frame"
    print(f"\nmedian {unit}; x = time over the 1-thread time under the same load")
    header = f"{'preset':<8} {'configuration':<24}"
    for load in args.load:
        header += f" | {'load ' + str(load):>18}"
    print(header)
    table = []
    for preset in args.presets:
        for config in args.configs:
            line = f"{preset:<8} {config:<24}"
            entry = {"preset": preset, "config": config}
            for load in args.load:
                rows = results.get((load, preset, config), [])
                base = results.get((load, preset, "1 thread"), [])
                if not rows:
                    line += f" | {'':>18}"
                    continue
                seconds = statistics.median(r["seconds"] for r in rows)
                ratio = seconds / statistics.median(r["seconds"] for r in base) if base else None
                threads = sorted({r["threads"] for r in rows})
                text = f"{seconds:.3f} ({f'x{ratio:.2f}' if ratio else '-'}) t{threads[0]}"
                if len(threads) > 1:
                    text += "+"
                line += f" | {text:>18}"
                entry[f"load{load}"] = {"seconds": seconds, "ratio": ratio, "threads": threads}
            table.append(entry)
            print(line)
    if args.json:
        args.json.write_text(json.dumps({"work": args.work, "rows": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
