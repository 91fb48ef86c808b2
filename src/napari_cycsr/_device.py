"""Where and how the networks run: device, numeric precision and CPU threads.

Three choices every front end (library, CLI, widgets) shares:

* **Device** (:func:`resolve_device`, :func:`available_devices`): ``"auto"`` is CUDA, then
  Apple MPS, then the CPU.
* **Precision** (:func:`resolve_precision`): ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA only)
  or ``"auto"``. Mixed precision runs the networks' convolutions and dense layers under
  :func:`torch.autocast`; weights, optimiser states, losses and the Voronoi cell means stay
  float32. ``"auto"`` picks bfloat16 on a CPU only where the hardware computes it natively
  (AMX or AVX-512 BF16) *and* a one-off timing in this process shows it faster than float32;
  on CUDA bfloat16 where supported, else float16; float32 everywhere else.
* **CPU threads** (:func:`choose_threads`, :func:`thread_scope`): torch's intra-op threads,
  fewer when other processes already keep the CPUs busy, so that two programs on two cores
  do not make each other wait. :func:`configure_openmp` asks the OpenMP runtime to let idle
  threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``); it only works before
  torch is first imported, which ``import napari_cycsr`` and the ``cycsr`` command arrange.

This module imports torch lazily (inside the functions that need it) so that
:func:`configure_openmp` can run before torch loads. It must never import Qt or napari.
Measurements: ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "PRECISIONS",
    "PRECISION_HELP",
    "ThreadScope",
    "autocast",
    "available_devices",
    "choose_threads",
    "configure_openmp",
    "cpu_count",
    "gui_threads",
    "memory_format",
    "others_busy_cpus",
    "precision_choices",
    "resolve_device",
    "resolve_precision",
    "thread_scope",
]

#: Accepted values of every ``precision`` option.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

#: One-paragraph help of every precision option (CLI ``--precision``, widget tooltips).
PRECISION_HELP = (
    "arithmetic of the network: auto (bfloat16 on a CPU that computes it natively, AMX or "
    "AVX-512 BF16, when a quick check measures it faster; bf16, else fp16, on a CUDA GPU; "
    "fp32 elsewhere), fp32, bf16 or fp16 (CUDA only). Weights and model files are float32 "
    "in every precision"
)

#: ``"auto"`` takes bfloat16 on a CPU only when it was at least this much faster than float32.
BF16_MIN_SPEEDUP = 1.2

#: Environment set by :func:`configure_openmp` (only where the user has not set it).
OPENMP_DEFAULTS: dict[str, str] = {
    "OMP_WAIT_POLICY": "PASSIVE",  # GNU and LLVM/Intel OpenMP: idle threads sleep
    "KMP_BLOCKTIME": "0",  # Intel/LLVM OpenMP (torch builds that ship libiomp)
}

#: How long a thread decision is reused before the machine's load is looked at again (s).
_THREADS_TTL = 30.0
#: Window over which the CPU time of other processes is sampled (s).
_LOAD_WINDOW = 0.15

_lock = threading.Lock()
_bf16_cache: dict[str, bool] = {}
_load_cache: dict[str, tuple[float, float | None]] = {}
_openmp: dict[str, bool] = {"configured": False}


# --------------------------------------------------------------------------------------------
# OpenMP environment
# --------------------------------------------------------------------------------------------


def configure_openmp(environ: dict[str, str] | None = None) -> bool:
    """Let torch's OpenMP threads sleep when idle instead of spinning (before torch loads).

    A waiting OpenMP thread normally spins for a while before it sleeps. On a machine whose
    cores are shared with other busy processes, spinning threads take CPU time from the
    thread that has work, and every parallel region waits for a thread the kernel has
    descheduled: two torch threads on two busy cores were several times slower than one
    (docs/performance.md). ``OMP_WAIT_POLICY=PASSIVE`` (GNU libgomp, LLVM / Intel OpenMP) and
    ``KMP_BLOCKTIME=0`` (Intel OpenMP) make idle threads sleep at once.

    The OpenMP runtime reads these variables once, when torch loads it, so this only has an
    effect before the first ``import torch`` of the process; it sets only variables the user
    has not set (none when ``OMP_WAIT_POLICY`` is set), and it changes nothing once torch is
    loaded.

    Parameters
    ----------
    environ : dict, optional
        The environment to change (default :data:`os.environ`).

    Returns
    -------
    bool
        True when the variables are (now or already) in effect for this process's torch:
        torch was not loaded yet and ``OMP_WAIT_POLICY`` is ``PASSIVE`` after the call.
    """
    env = os.environ if environ is None else environ
    torch_loaded = "torch" in sys.modules
    if not torch_loaded and "OMP_WAIT_POLICY" not in env:  # the user's choice wins
        for key, value in OPENMP_DEFAULTS.items():
            env.setdefault(key, value)
    passive = not torch_loaded and env.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    if environ is None:
        _openmp["configured"] = _openmp["configured"] or passive
    return passive


def openmp_passive() -> bool:
    """Whether this process's OpenMP threads sleep when idle (see :func:`configure_openmp`)."""
    if _openmp["configured"]:
        return True
    # torch loaded before napari_cycsr, but the user may have set the variable themselves
    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


# --------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Names of the devices usable here, for a device menu.

    Returns
    -------
    list of str
        ``"cpu"`` first, then ``"cuda:0"``, ``"cuda:1"``... and ``"mps"`` when present.
        ``"auto"`` (see :func:`resolve_device`) is always accepted too but not listed.
    """
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device request into an available :class:`torch.device`.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA if available, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"``, ``"mps"`` or a :class:`torch.device`.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the name is not a device, or the device is not available on this machine.
    TypeError
        If ``device`` is neither a string nor a :class:`torch.device`.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if isinstance(device, torch.device):
        requested = device
    elif isinstance(device, str):
        name = device.strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda", torch.cuda.current_device())
            if _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            requested = torch.device(name)
        except RuntimeError as err:
            raise ValueError(
                f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
            ) from err
    else:
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")

    if requested.type == "cpu":
        return torch.device("cpu")
    if requested.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(requested)!r} requested but CUDA is not available (no NVIDIA GPU "
                "or a CPU-only torch build); use device='cpu' or 'auto'"
            )
        index = requested.index if requested.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device 'cuda:{index}' requested but only {torch.cuda.device_count()} CUDA "
                f"device(s) exist; available: {available_devices()}"
            )
        return torch.device("cuda", index)
    if requested.type == "mps":
        if not _mps_available():
            raise ValueError(
                "device 'mps' requested but Apple MPS is not available; use 'cpu' or 'auto'"
            )
        return torch.device("mps")
    raise ValueError(
        f"unsupported device {str(requested)!r}; expected one of {available_devices()} or 'auto'"
    )


# --------------------------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------------------------


def check_precision(precision: Any) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise.

    Raises
    ------
    TypeError
        If ``precision`` is not a string.
    ValueError
        If it is not one of :data:`PRECISIONS`.
    """
    if not isinstance(precision, str):
        raise TypeError(f"precision must be a string, got {type(precision).__name__}")
    name = precision.strip().lower()
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return name


def precision_choices() -> list[str]:
    """The precisions worth offering in a menu here: fp16 only where CUDA is available."""
    import torch

    choices = ["auto", "fp32", "bf16"]
    if torch.cuda.is_available():
        choices.append("fp16")
    return choices


def _cpu_flags() -> set[str] | None:
    """The CPU feature flags of ``/proc/cpuinfo`` (Linux), or None where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX-BF16 or AVX-512 BF16).

    torch's oneDNN check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) must agree; on
    Linux the CPU flags must also name ``amx_bf16`` or ``avx512_bf16`` (oneDNN also reports
    plain AVX-512 CPUs, which only emulate bfloat16). Without either, bfloat16 on this CPU is
    emulated and many times slower than float32 (docs/performance.md).
    """
    import torch

    try:
        supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        supported = False
    if not supported:
        return False
    flags = _cpu_flags()
    if flags is None:  # not Linux: trust oneDNN, the timing decides
        return True
    return bool({"amx_bf16", "avx512_bf16"} & flags)


def _bf16_speedup(repeats: int = 5, batch: int = 8, threads: int | None = 1) -> float:
    """float32 time over bfloat16-autocast time of a small conv, forward and backward.

    Timed in ``threads`` threads (None: torch's current setting), float32 and bfloat16 in
    turn, best of ``repeats`` each. One thread measures the ratio of the two kernels, not
    the machine's load: with torch's threads and one competing process, the first timing of
    a process swung across the decision threshold from one process to the next on a 2-core
    AMX machine, so that "auto" chose float32 or bfloat16 by chance (docs/performance.md,
    ``benchmarks/bench_precision.py --probe``).
    """
    import torch
    from torch import nn

    conv = nn.Conv2d(32, 32, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 32, 64, 64).to(memory_format=torch.channels_last).requires_grad_(True)

    def once(dtype: torch.dtype | None) -> float:
        start = time.perf_counter()
        with autocast(torch.device("cpu"), dtype):
            y = conv(x)
        y.float().sum().backward()
        return time.perf_counter() - start

    dtypes = (None, torch.bfloat16)
    before = torch.get_num_threads()
    torch.set_num_threads(before if threads is None else threads)
    try:
        for dtype in dtypes:  # warm-up (oneDNN primitive creation, first use of the tiles)
            once(dtype)
            once(dtype)
        times: dict[torch.dtype | None, list[float]] = {dtype: [] for dtype in dtypes}
        for _ in range(repeats):
            for dtype in dtypes:
                times[dtype].append(once(dtype))
    finally:
        torch.set_num_threads(before)
    return min(times[None]) / min(times[torch.bfloat16])


def cpu_bf16_pays() -> bool:
    """Whether bfloat16 autocast is worth it on this CPU (hardware and a timing; cached).

    The timing (a 32-channel 3x3 convolution, forward and backward, float32 against
    bfloat16 autocast, best of 5, in one thread) runs once per process and takes well
    under a second;
    bfloat16 must be at least :data:`BF16_MIN_SPEEDUP` times faster.
    """
    with _lock:
        if "cpu" not in _bf16_cache:
            pays = False
            if cpu_has_native_bf16():
                try:
                    pays = _bf16_speedup() >= BF16_MIN_SPEEDUP
                except RuntimeError:  # a torch build without CPU bf16 kernels
                    pays = False
            _bf16_cache["cpu"] = pays
        return _bf16_cache["cpu"]


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain float32.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``"auto"``: bfloat16 on a CPU where it is native and measured faster
        (:func:`cpu_bf16_pays`), bfloat16 on a CUDA GPU that supports it, else float16;
        float32 on MPS and elsewhere. ``"bf16"`` on a CPU without native bfloat16 runs
        (emulated, slowly) with a warning. ``"fp16"`` is for CUDA only.
    device : torch.device
        The device the networks run on (from :func:`resolve_device`).

    Returns
    -------
    torch.dtype or None
        ``torch.bfloat16`` or ``torch.float16`` for :func:`autocast`, None for float32.

    Raises
    ------
    ValueError
        For an unknown precision, or one the device cannot run (fp16 on a CPU, bf16 on a
        GPU without it, mixed precision on MPS).
    """
    import torch

    name = check_precision(precision)
    kind = device.type
    if name == "fp32":
        return None
    if kind == "cuda":
        bf16_ok = bool(torch.cuda.is_bf16_supported())
        if name == "auto":
            return torch.bfloat16 if bf16_ok else torch.float16
        if name == "bf16" and not bf16_ok:
            raise ValueError(
                f"precision 'bf16' requested but {device} does not support bfloat16; use "
                "'fp16', 'fp32' or 'auto'"
            )
        return torch.bfloat16 if name == "bf16" else torch.float16
    if kind == "cpu":
        if name == "auto":
            return torch.bfloat16 if cpu_bf16_pays() else None
        if name == "fp16":
            raise ValueError(
                "precision 'fp16' is for CUDA GPUs; on a CPU use 'bf16', 'fp32' or 'auto'"
            )
        if not cpu_has_native_bf16():
            warnings.warn(
                "this CPU has no native bfloat16 (AMX or AVX-512 BF16): precision 'bf16' is "
                "emulated and much slower than 'fp32'",
                RuntimeWarning,
                stacklevel=3,
            )
        return torch.bfloat16
    if name == "auto":
        return None
    raise ValueError(f"precision {name!r} is not supported on {kind} devices; use 'fp32' or 'auto'")


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout the networks run in on ``device``: channels-last (NHWC) on CPU and CUDA.

    oneDNN convolves NHWC faster on CPUs, and NHWC suits tensor cores on CUDA; other devices
    keep torch's default layout.
    """
    import torch

    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """:func:`torch.autocast` to ``dtype`` on ``device``, or a no-op for ``dtype=None``."""
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------
# CPU threads
# --------------------------------------------------------------------------------------------


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is not None:
        try:
            return max(1, len(getter(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def gui_threads() -> int:
    """Threads for work started from napari: every CPU but one, which stays with the GUI
    thread (it draws the loss plot, the preview and the canvas); at least 1.

    With both cores of a 2-core machine taken by a training worker, napari's main thread
    waited up to 0.7 s (median 35 ms between 10 ms timer ticks; docs/tutorial.md).
    """
    return max(1, cpu_count() - 1)


def _read_cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``, or None where unavailable."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user time
    return total - idle, total


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _reading() -> tuple[int, int, float, float] | None:
    """(machine busy jiffies, machine total jiffies, own CPU seconds, wall seconds), or None."""
    jiffies = _read_cpu_jiffies()
    if jiffies is None:
        return None
    return jiffies[0], jiffies[1], _own_cpu_seconds(), time.monotonic()


def _others_between(
    first: tuple[int, int, float, float], second: tuple[int, int, float, float]
) -> float | None:
    """CPUs other processes kept busy, on average, between two :func:`_reading` s."""
    if second[1] <= first[1] or second[3] <= first[3]:
        return None
    busy_fraction = (second[0] - first[0]) / (second[1] - first[1])
    n_cpus = os.cpu_count() or 1  # /proc/stat counts every CPU of the machine
    own = (second[2] - first[2]) / (second[3] - first[3])
    return max(0.0, busy_fraction * n_cpus - own)


def others_busy_cpus(window: float = _LOAD_WINDOW) -> float | None:
    """How many CPUs other processes keep busy right now (sampled over ``window`` seconds).

    Reads the machine's CPU time from ``/proc/stat`` before and after a short sleep, minus
    this process's own CPU time in that window. Returns None where ``/proc/stat`` does not
    exist (macOS, Windows): then the 1-minute load average is used, if the OS has one.
    """
    first = _reading()
    if first is None:
        getter = getattr(os, "getloadavg", None)
        if getter is None:
            return None
        try:
            return float(getter()[0])
        except OSError:
            return None
    time.sleep(window)
    second = _reading()
    return None if second is None else _others_between(first, second)


def choose_threads(
    cpus: int, others_busy: float | None, current: int, *, passive: bool = True
) -> int:
    """The number of torch threads to use, given what the machine is doing (pure function).

    Parameters
    ----------
    cpus : int
        CPUs this process may run on (:func:`cpu_count`).
    others_busy : float or None
        CPUs other processes keep busy (:func:`others_busy_cpus`); None = unknown (taken as
        an idle machine).
    current : int
        torch's current thread count: the choice never exceeds it (a user's
        ``torch.set_num_threads`` or ``OMP_NUM_THREADS`` is an upper bound).
    passive : bool
        Whether idle OpenMP threads sleep (:func:`configure_openmp` took effect). With
        spinning threads any load from others gives one thread.

    Returns
    -------
    int
        ``cpus`` minus the busy ones (rounded), at least 1 and at most ``current``. When
        other processes keep at least half a CPU busy and idle threads spin, 1.

    Examples
    --------
    >>> choose_threads(2, 0.0, 2), choose_threads(2, 1.0, 2), choose_threads(8, 3.2, 8)
    (2, 1, 5)
    >>> choose_threads(2, 0.6, 2, passive=False), choose_threads(16, 0.0, 4)
    (1, 4)
    """
    cpus = max(1, int(cpus))
    current = max(1, int(current))
    if others_busy is None:
        free = float(cpus)
    elif not passive and others_busy >= 0.5:
        return 1
    else:
        free = cpus - max(0.0, float(others_busy))
    return max(1, min(current, cpus, int(free + 0.5)))


def auto_threads(*, refresh: bool = False) -> int:
    """:func:`choose_threads` for this machine now.

    The load of other processes is sampled at most every 30 s (the reading is cached);
    torch's current thread count bounds the result. The environment variable
    ``CYCSR_THREADS`` (a positive integer) overrides the choice.
    """
    import torch

    forced = os.environ.get("CYCSR_THREADS", "").strip()
    if forced:
        value = int(forced) if forced.isdigit() else 0
        if value < 1:
            raise ValueError(f"CYCSR_THREADS must be a positive integer, got {forced!r}")
        return value
    now = time.monotonic()
    with _lock:
        cached = _load_cache.get("others")
    if cached is None or refresh or now - cached[0] >= _THREADS_TTL:
        cached = (now, others_busy_cpus())
        with _lock:
            _load_cache["others"] = cached
    return choose_threads(cpu_count(), cached[1], torch.get_num_threads(), passive=openmp_passive())


def check_threads(threads: Any) -> int | None:
    """Validate a ``threads`` option: None (automatic) or a positive integer."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None (automatic), got {threads!r}")
    return int(threads)


class ThreadScope:
    """torch's CPU threads for one piece of work, re-chosen while it runs; restored after.

    Use :func:`thread_scope`. With ``threads=None`` the count starts at :func:`auto_threads`
    and :meth:`update` (called between two steps of the work) chooses again every
    ``interval`` seconds from the CPU time other processes used since the last look, which
    costs no waiting: a long training gives a core back when another job starts and takes
    it again when the job ends. An explicit count is kept as it is. On a GPU the CPU thread
    count is left alone.
    """

    def __init__(
        self, threads: int | None, device: torch.device | None = None, *, interval: float = 30.0
    ) -> None:
        self.requested = check_threads(threads)
        self.active = device is None or device.type == "cpu"
        self.interval = float(interval)
        self.threads = 0
        self._before = 0
        self._mark: tuple[int, int, float, float] | None = None

    def __enter__(self) -> ThreadScope:
        import torch

        self._before = torch.get_num_threads()
        if not self.active:
            self.threads = self._before
            return self
        self.threads = auto_threads() if self.requested is None else self.requested
        if self.threads != self._before:
            torch.set_num_threads(self.threads)
        self._mark = _reading()
        return self

    def update(self) -> int:
        """Choose the thread count again if ``interval`` has passed; returns the count."""
        automatic = self.requested is None and not os.environ.get("CYCSR_THREADS", "").strip()
        if not (self.active and automatic and self._mark is not None):
            return self.threads
        if time.monotonic() - self._mark[3] < self.interval:
            return self.threads
        reading = _reading()
        others = None if reading is None else _others_between(self._mark, reading)
        self._mark = reading
        if others is None:
            return self.threads
        with _lock:
            _load_cache["others"] = (time.monotonic(), others)
        wanted = choose_threads(cpu_count(), others, self._before, passive=openmp_passive())
        if wanted != self.threads:
            import torch

            torch.set_num_threads(wanted)
            self.threads = wanted
        return self.threads

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.active and torch.get_num_threads() != self._before:
            torch.set_num_threads(self._before)


def thread_scope(
    threads: int | None, device: torch.device | None = None, *, interval: float = 30.0
) -> ThreadScope:
    """Run a block with ``threads`` torch threads (None: automatic), restored after.

    Examples
    --------
    >>> with thread_scope(1) as scope:
    ...     scope.threads
    1
    """
    return ThreadScope(threads, device, interval=interval)
