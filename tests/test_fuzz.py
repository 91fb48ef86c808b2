"""Fuzz: random shapes, dtypes, NaNs and damaged files fed to every reader and public function.

Every call must end in a valid result or a clear error (``ValueError``, ``TypeError`` or
``OSError`` with a sentence for a message): never another exception type, never a hang
(each call runs under an alarm) and never more than a memory bound (the cases run in a
subprocess whose data segment is capped with ``resource.setrlimit``; its peak RSS is
reported). The default run is a few seconds of seeded cases; ``-m slow`` runs many more.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest

#: Data-segment cap of the fuzz subprocess (torch and friends need about 0.3 GB).
MEMORY_BOUND = 2 * 2**30
#: Seconds one call may take before it counts as a hang (generous: the machine is shared).
TIME_BOUND = 30

ALLOWED = (ValueError, TypeError, OSError)
SIDES = (0, 1, 2, 3, 4, 5, 8, 9, 17, 33, 48)
DTYPES = (
    "bool", "uint8", "int8", "int16", "uint16", "int32", "int64", "float16", "float32",
    "float64", "complex64", "object", "<U1", "datetime64[s]",
)  # fmt: skip


class _Hang(BaseException):
    """Raised by the alarm: the call ran past TIME_BOUND."""


def _random_array(rng: np.random.Generator) -> np.ndarray:
    ndim = int(rng.choice([0, 1, 2, 2, 2, 3, 3, 4]))
    shape = tuple(int(rng.choice(SIDES)) for _ in range(ndim))
    if ndim >= 3 and rng.random() < 0.3:
        shape = (*shape[:-1], int(rng.choice([3, 4])))  # colour-like last axis
    if int(np.prod(shape, dtype=np.int64)) > 48 * 48 * 6:
        shape = shape[-2:]
    dtype = np.dtype(str(rng.choice(DTYPES)))
    scale = float(10 ** rng.uniform(-3, 6)) * (-1 if rng.random() < 0.2 else 1)
    base = rng.random(shape) * scale
    if dtype.kind == "f":
        arr = base.astype(dtype)
        if arr.size and rng.random() < 0.3:
            flat = arr.reshape(-1)
            flat[rng.integers(0, arr.size, max(1, arr.size // 10))] = rng.choice(
                [np.nan, np.inf, -np.inf]
            )
        return arr
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(base, info.min, info.max).astype(dtype)
    if dtype.kind == "b":
        return base > scale / 2
    if dtype.kind == "c":
        return (base + 1j * base).astype(dtype)
    if dtype.kind == "M":
        return np.zeros(shape, dtype)
    return np.full(shape, "x", dtype=dtype)


def _fixtures():
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.models import SRModel
    from napari_cycsr.simulate import hexagonal_lattice

    bundle = FibreBundle(hexagonal_lattice((32, 32), 3.0, seed=0), (32, 32))
    return bundle, SRModel.new("tiny")


def _array_calls(bundle, model):
    from napari_cycsr import _validate, baselines, detect, metrics, simulate
    from napari_cycsr.consistency import project_consistent
    from napari_cycsr.data import as_frame_stacks
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.inference import check_image, fov_from_image, super_resolve

    finite = {"to_unit_float", "super_resolve", "simulate_pcle", "wiener", "sharpen"}
    calls = {
        "as_image": _validate.as_image,
        "to_unit_float": _validate.to_unit_float,
        "check_image": check_image,
        "gcf": metrics.gcf,
        "ssim": lambda a: metrics.ssim(a, a),
        "psnr": lambda a: metrics.psnr(a, np.zeros_like(a) if hasattr(a, "shape") else a),
        "wiener": lambda a: baselines.wiener(a, 3.0),
        "sharpen": baselines.sharpen,
        "simulate_pcle": lambda a: simulate.simulate_pcle(a, seed=0).lr,
        "detect": FibreBundle.detect,
        "bundle_fov": detect.bundle_fov,
        "estimate_spacing": detect.estimate_spacing,
        "FibreBundle": lambda a: FibreBundle(a, (32, 32)),
        "as_frame_stacks": as_frame_stacks,
        "super_resolve": lambda a: super_resolve(model, a, device="cpu"),
        "fov_from_image": fov_from_image,
        "reconstruct": bundle.reconstruct,
        "vectorize": bundle.vectorize,
        "sample": bundle.sample,
        "core_values": bundle.core_values,
        "project_consistent": lambda a: project_consistent(
            a, bundle, np.zeros(bundle.n_fibres, np.float32)
        ),
    }
    return calls, finite


def _damaged_files(rng: np.random.Generator, folder: Path, model) -> list[tuple[str, Path]]:
    """Valid files of every kind, then cut, overwritten with noise or given a lying header."""
    from napari_cycsr._imageio import write_image
    from napari_cycsr.io import save_model

    out = []
    image = (rng.random((40, 48)) * 255).astype(np.uint8)
    for suffix in (".tif", ".png", ".npy"):
        path = folder / f"img{suffix}"
        write_image(path, image)
        out.append(("read_image", path))
    path = folder / "model.safetensors"
    save_model(model, path)
    out.append(("load_model", path))
    path = folder / "fibres.csv"
    path.write_text("y,x\n" + "\n".join(f"{y},{x}" for y, x in rng.random((20, 2)) * 30))
    out.append(("from_csv", path))
    damaged = []
    for reader, path in out:
        data = path.read_bytes()
        kind = rng.integers(0, 4)
        if kind == 0:
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == 1:
            data = bytes(rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8))
        elif kind == 2 and len(data) > 16:
            pos = int(rng.integers(0, len(data)))
            data = data[:pos] + bytes([int(rng.integers(0, 256))]) + data[pos + 1 :]
        elif kind == 3:
            data = data.replace(b'"channels": 8', b'"channels": %d' % rng.integers(-5, 10**7))
            data = data.replace(b'"blocks": 2', b'"blocks": %d' % rng.integers(-5, 10**7))
            data = data.replace(b"\x28\x00\x00\x00", b"\xff\xff\x00\x00")  # a 40 px side
        target = path.with_name(f"damaged-{rng.integers(0, 10**9)}{path.suffix}")
        target.write_bytes(data)
        damaged.append((reader, target))
    return damaged


def _judge(name: str, fn, arg, finite: bool) -> dict | None:
    """None when the call ended well, else a description of what went wrong."""
    signal.alarm(TIME_BOUND)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn(arg)
    except _Hang:
        return {"call": name, "problem": f"no answer within {TIME_BOUND} s"}
    except ALLOWED as error:
        message = " ".join(str(error).split())
        if len(message) < 12 or " " not in message:
            return {"call": name, "problem": f"unclear message {message!r}"}
        return None
    except BaseException as error:  # noqa: BLE001 - every other type is a finding
        return {
            "call": name,
            "problem": f"{type(error).__name__}: {error}",
            "where": traceback.format_exc().splitlines()[-3:],
        }
    finally:
        signal.alarm(0)
    if finite and isinstance(result, np.ndarray) and result.dtype.kind == "f":
        if not np.isfinite(result).all():
            return {"call": name, "problem": "non-finite result without an error"}
    return None


def _worker(cases: int, seed: int) -> dict:
    """Run the cases (in the capped subprocess) and return the findings."""
    import resource

    import torch

    from napari_cycsr._imageio import read_image
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.io import load_model

    torch.set_num_threads(1)

    def hang(signum, frame):
        raise _Hang()

    signal.signal(signal.SIGALRM, hang)
    rng = np.random.default_rng(seed)
    bundle, model = _fixtures()
    calls, finite = _array_calls(bundle, model)
    readers = {
        "read_image": read_image,
        "load_model": load_model,
        "from_csv": lambda p: FibreBundle.from_csv(p, (32, 32)),
    }
    findings = []
    n_calls = 0
    for case in range(cases):
        arr = _random_array(rng)
        for name, fn in calls.items():
            problem = _judge(name, fn, arr.copy(), name in finite)
            n_calls += 1
            if problem:
                problem["input"] = f"case {case}: shape {arr.shape} dtype {arr.dtype}"
                findings.append(problem)
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(max(1, cases // 4)):
            for reader, path in _damaged_files(rng, Path(folder), model):
                problem = _judge(reader, readers[reader], path, False)
                n_calls += 1
                if problem:
                    problem["input"] = f"{path.name} ({path.stat().st_size} bytes)"
                    findings.append(problem)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"findings": findings, "calls": n_calls, "peak_rss": rss}


def _run(cases: int, seed: int, timeout: float) -> dict:
    code = (
        "import json, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_DATA, ({MEMORY_BOUND}, {MEMORY_BOUND})); "
        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "import test_fuzz; "
        f"print('FUZZ' + json.dumps(test_fuzz._worker({cases}, {seed})))"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("FUZZ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][4:])


def _check(report: dict) -> None:
    findings = report["findings"]
    assert not findings, json.dumps(findings[:10], indent=1)
    assert report["peak_rss"] < MEMORY_BOUND


def test_fuzz_short():
    _check(_run(cases=8, seed=12, timeout=600))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_long(seed):
    _check(_run(cases=150, seed=seed, timeout=3000))


def test_the_judge_finds_what_it_must(monkeypatch):
    """The harness itself: other exception types, vague messages, hangs and NaN are found."""
    import time

    monkeypatch.setattr(sys.modules[__name__], "TIME_BOUND", 1)

    def hang(signum, frame):
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, hang)
    try:
        assert _judge("x", lambda a: a[10], np.zeros(3), False)["problem"].startswith("Index")
        assert (
            "unclear"
            in _judge("x", lambda a: (_ for _ in ()).throw(ValueError("0")), 1, 0)["problem"]
        )
        assert (
            _judge("x", lambda a: (_ for _ in ()).throw(ValueError("a clear message")), 1, 0)
            is None
        )
        assert "within" in _judge("x", lambda a: time.sleep(5), None, False)["problem"]
        assert "non-finite" in _judge("x", lambda a: np.array([np.nan]), None, True)["problem"]
    finally:
        signal.signal(signal.SIGALRM, previous)
