"""Tests of device, precision and thread choice (napari_cycsr._device), with mocked hardware."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_cycsr import _device
from napari_cycsr._device import (
    autocast,
    check_precision,
    choose_threads,
    configure_openmp,
    resolve_precision,
    thread_scope,
)

CPU = torch.device("cpu")


@pytest.fixture
def fresh_caches(monkeypatch):
    """Empty the per-process caches of the bf16 check and the load reading."""
    monkeypatch.setattr(_device, "_bf16_cache", {})
    monkeypatch.setattr(_device, "_load_cache", {})
    monkeypatch.delenv("CYCSR_THREADS", raising=False)


# ----------------------------------------------------------------------------- threads
@pytest.mark.parametrize(
    ("cpus", "busy", "current", "passive", "expected"),
    [
        (2, 0.0, 2, True, 2),  # idle machine: all CPUs
        (2, 0.3, 2, True, 2),  # a little noise does not cost a thread
        (2, 1.0, 2, True, 1),  # one core taken by another process
        (2, 2.0, 2, True, 1),  # fully loaded: one thread, never zero
        (2, 5.0, 2, True, 1),
        (8, 3.2, 8, True, 5),
        (8, 0.0, 4, True, 4),  # never more than torch's current setting
        (1, 0.0, 4, True, 1),  # never more than the CPUs we may use
        (2, None, 2, True, 2),  # unknown load: as if idle
        (2, 0.6, 2, False, 1),  # spinning OpenMP threads: any real load gives one thread
        (2, 0.2, 2, False, 2),
        (16, 0.6, 16, False, 1),
    ],
)
def test_choose_threads_policy(cpus, busy, current, passive, expected):
    assert choose_threads(cpus, busy, current, passive=passive) == expected


def test_auto_threads_uses_affinity_load_and_current_setting(monkeypatch, fresh_caches):
    monkeypatch.setattr(_device, "cpu_count", lambda: 4)
    monkeypatch.setattr(_device, "openmp_passive", lambda: True)
    readings = iter([1.0, 3.5])
    monkeypatch.setattr(_device, "others_busy_cpus", lambda: next(readings))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        assert _device.auto_threads() == 3
        assert _device.auto_threads() == 3  # cached: the load is not sampled again
        assert _device.auto_threads(refresh=True) == 1
        torch.set_num_threads(1)  # the user's own setting bounds the choice
        monkeypatch.setattr(_device, "others_busy_cpus", lambda: 0.0)
        assert _device.auto_threads(refresh=True) == 1
    finally:
        torch.set_num_threads(before)


def test_cycsr_threads_environment_overrides(monkeypatch, fresh_caches):
    monkeypatch.setenv("CYCSR_THREADS", "3")
    assert _device.auto_threads() == 3
    monkeypatch.setenv("CYCSR_THREADS", "many")
    with pytest.raises(ValueError, match="CYCSR_THREADS"):
        _device.auto_threads()


def test_thread_scope_sets_and_restores(monkeypatch, fresh_caches):
    before = torch.get_num_threads()
    monkeypatch.setattr(_device, "auto_threads", lambda: 1)
    with thread_scope(None) as scope:
        assert scope.threads == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with thread_scope(3) as scope:
        assert scope.threads == 3 and torch.get_num_threads() == 3
        assert scope.update() == 3  # an explicit count is kept
    assert torch.get_num_threads() == before
    with thread_scope(None, torch.device("cuda", 0)) as scope:  # not on a GPU
        assert scope.threads == before
    with pytest.raises(ValueError, match="threads"):
        with thread_scope(0):
            pass
    with pytest.raises(ValueError, match="threads"):
        with thread_scope(True):
            pass


def test_others_busy_cpus_subtracts_our_own_cpu_time(monkeypatch):
    # machine: 4 CPUs; in the window 2 of 4 CPU-windows were busy, 0.5 of it ours
    jiffies = iter([(1000, 4000), (1200, 4400)])
    own = iter([10.0, 10.05])
    clock = iter([100.0, 100.1])
    monkeypatch.setattr(_device, "_read_cpu_jiffies", lambda: next(jiffies))
    monkeypatch.setattr(_device, "_own_cpu_seconds", lambda: next(own))
    monkeypatch.setattr(_device.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(_device.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(_device.time, "sleep", lambda s: None)
    assert _device.others_busy_cpus(window=0.1) == pytest.approx(2.0 - 0.5)


def test_thread_scope_follows_the_load_while_it_runs(monkeypatch, fresh_caches):
    """A long run gives a core back when another job starts, and takes it again after."""
    monkeypatch.setattr(_device, "cpu_count", lambda: 2)
    monkeypatch.setattr(_device, "openmp_passive", lambda: True)
    monkeypatch.setattr(_device, "auto_threads", lambda: 2)
    now = [0.0]
    monkeypatch.setattr(_device.time, "monotonic", lambda: now[0])
    # machine busy fraction and own CPU time per reading: (busy, total, own)
    state = {"busy": 0, "total": 0, "own": 0.0}
    monkeypatch.setattr(_device, "_read_cpu_jiffies", lambda: (state["busy"], state["total"]))
    monkeypatch.setattr(_device, "_own_cpu_seconds", lambda: state["own"])
    monkeypatch.setattr(_device.os, "cpu_count", lambda: 2)

    def advance(seconds, others_cpus, own_cpus):
        now[0] += seconds
        state["total"] += int(200 * seconds)  # 2 CPUs x 100 jiffies per second
        state["busy"] += int(100 * seconds * (others_cpus + own_cpus))
        state["own"] += own_cpus * seconds

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with thread_scope(None, interval=30) as scope:
            assert scope.threads == 2
            advance(10, 0.0, 2.0)
            assert scope.update() == 2  # too early to look again
            advance(50, 0.7, 1.3)  # another job starts and takes its share (0.6 on average)
            assert scope.update() == 1 and torch.get_num_threads() == 1
            advance(40, 1.0, 1.0)
            assert scope.update() == 1
            advance(40, 0.0, 1.0)  # the other job has ended
            assert scope.update() == 2 and torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_others_busy_cpus_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(_device, "_read_cpu_jiffies", lambda: None)
    monkeypatch.setattr(_device.os, "getloadavg", lambda: (1.5, 1.0, 0.5), raising=False)
    assert _device.others_busy_cpus() == 1.5
    monkeypatch.delattr(_device.os, "getloadavg")
    assert _device.others_busy_cpus() is None


def test_others_busy_cpus_reads_this_machine():
    value = _device.others_busy_cpus(window=0.05)
    if value is not None:
        assert 0.0 <= value <= (os.cpu_count() or 1) + 0.5
    assert 1 <= _device.cpu_count() <= (os.cpu_count() or 1)


# ----------------------------------------------------------------------------- OpenMP
def test_configure_openmp_sets_defaults_only_before_torch_and_respects_the_user():
    env: dict[str, str] = {}
    # torch is loaded in this test process: nothing may change
    assert configure_openmp(env) is False and env == {}


def test_configure_openmp_in_a_fresh_process():
    code = (
        "import os, sys\n"
        "os.environ.pop('OMP_WAIT_POLICY', None)\n"
        "import napari_cycsr\n"
        "from napari_cycsr import _device\n"
        "assert 'torch' not in sys.modules  # the variables must be set before torch loads\n"
        "print(os.environ['OMP_WAIT_POLICY'], _device.openmp_passive())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["PASSIVE", "True"]
    user = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}
    out = subprocess.run(
        [sys.executable, "-c", code.replace("os.environ.pop('OMP_WAIT_POLICY', None)\n", "")],
        capture_output=True, text=True, check=True, timeout=120, env=user,
    )  # fmt: skip
    assert out.stdout.split() == ["ACTIVE", "False"]


# ----------------------------------------------------------------------------- precision
def test_check_precision():
    assert check_precision(" BF16 ") == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        check_precision("int8")
    with pytest.raises(TypeError, match="precision"):
        check_precision(16)


def test_auto_precision_on_cpu_follows_hardware_and_timing(monkeypatch, fresh_caches):
    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: False)
    timed = []
    monkeypatch.setattr(_device, "_bf16_speedup", lambda: timed.append(1) or 9.0)
    assert resolve_precision("auto", CPU) is None
    assert timed == []  # no native bf16: no timing at all

    monkeypatch.setattr(_device, "_bf16_cache", {})
    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", CPU) is torch.bfloat16
    assert resolve_precision("auto", CPU) is torch.bfloat16
    assert timed == [1]  # measured once per process

    monkeypatch.setattr(_device, "_bf16_cache", {})
    monkeypatch.setattr(_device, "_bf16_speedup", lambda: 1.05)  # native but not faster
    assert resolve_precision("auto", CPU) is None


def test_explicit_precisions_on_cpu(monkeypatch):
    assert resolve_precision("fp32", CPU) is None
    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="emulated"):
        assert resolve_precision("bf16", CPU) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        resolve_precision("fp16", CPU)


def test_precision_on_cuda_and_mps_with_mocked_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda", 0)
    assert resolve_precision("auto", cuda) is torch.bfloat16
    assert resolve_precision("fp16", cuda) is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", cuda) is torch.float16
    with pytest.raises(ValueError, match="does not support bfloat16"):
        resolve_precision("bf16", cuda)
    mps = torch.device("mps")
    assert resolve_precision("auto", mps) is None
    with pytest.raises(ValueError, match="not supported on mps"):
        resolve_precision("bf16", mps)


def test_cpu_native_bf16_needs_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(_device, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512bw"})
    assert _device.cpu_has_native_bf16() is False  # AVX-512 without BF16: emulated
    monkeypatch.setattr(_device, "_cpu_flags", lambda: {"avx512f", "amx_bf16", "amx_tile"})
    assert _device.cpu_has_native_bf16() is True
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert _device.cpu_has_native_bf16() is False


def test_bf16_speedup_runs_and_autocast_computes_in_bf16():
    assert _device._bf16_speedup(repeats=1, batch=1) > 0
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.randn(1, 1, 8, 8)
    with autocast(CPU, torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
    with autocast(CPU, None):
        assert conv(x).dtype == torch.float32


def test_bf16_speedup_is_timed_in_one_thread_and_gives_the_threads_back(monkeypatch):
    # with several threads a competing process made the ratio swing across the threshold
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n) or real(n))
    before = torch.get_num_threads()
    calls = []
    conv_forward = torch.nn.Conv2d.forward

    def forward(self, x):
        calls.append(torch.get_num_threads())
        return conv_forward(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", forward)
    assert _device._bf16_speedup(repeats=2, batch=1) > 0
    assert calls and set(calls) == {1}  # every timed (and warm-up) pass in one thread
    assert seen == [1, before] and torch.get_num_threads() == before


def test_old_imports_still_work():
    import napari_cycsr
    from napari_cycsr.inference import available_devices, resolve_device

    assert napari_cycsr.resolve_device is resolve_device is _device.resolve_device
    assert available_devices is _device.available_devices
    assert np.all([d in available_devices() for d in ["cpu"]])
