"""What every ``cycsr`` command shares: errors, progress, readers, option parsers, the help
formatter and the common options (``--device``, ``--threads``, ``--precision``, ``--quiet``,
``--debug``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .._imageio import read_image

PROG = "cycsr"


class CLIError(ValueError):
    """Bad command-line input found after parsing (reported as one line, exit status 1)."""


def is_main_process() -> bool:
    """True on rank 0 of a ``torchrun`` job, and always when not distributed."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return int(os.environ.get("RANK", "0")) == 0


def say(message: str) -> None:
    """Print a progress/result line on rank 0 only."""
    if is_main_process():
        print(message, flush=True)


def progress_bar(total: int, desc: str, unit: str = "it", disable: bool = False) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        dynamic_ncols=True,
        disable=disable or not is_main_process(),
        file=sys.stderr,
    )


def as_frames(array: np.ndarray) -> np.ndarray:
    """``(..., H, W)`` -> ``(T, H, W)`` view."""
    return array.reshape((-1, *array.shape[-2:]))


def read_2d(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """Read one 2-D image; a stack is averaged over its frames (static fibre geometry)."""
    array = read_image(path)
    if array.ndim > 2:
        array = as_frames(array).astype(np.float64).mean(axis=0)
    if min(array.shape) < 8:
        raise CLIError(f"{path}: {what} of shape {array.shape} is too small")
    return array


def check_shape(
    path: Any, array: np.ndarray, shape: tuple[int, ...], what: str, against: str
) -> None:
    if tuple(array.shape[-2:]) != tuple(shape):
        raise CLIError(
            f"{path}: {what} is {array.shape[-2]}x{array.shape[-1]} pixels but {against} is "
            f"{shape[0]}x{shape[1]}; expected the same frame size"
        )


def load_bundle(csv_path: str | os.PathLike[str], shape: tuple[int, int]) -> Any:
    from ..fibres import FibreBundle

    path = Path(csv_path)
    if not path.is_file():
        raise OSError(f"{path}: no such fibre file (make one with `cycsr detect`)")
    return FibreBundle.from_csv(path, shape)


def number(kind: type, minimum: float, strict: bool, expected: str) -> Any:
    """An argparse ``type=`` that parses ``kind`` and refuses values below ``minimum``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        too_small = value <= minimum if strict else value < minimum
        if not np.isfinite(value) or too_small:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = number(int, 0, True, "a positive integer")
non_negative_int = number(int, 0, False, "an integer >= 0")
positive_float = number(float, 0.0, True, "a positive number")
non_negative_float = number(float, 0.0, False, "a number >= 0")


def projection_noise(text: str) -> Any:
    """``--project-noise``: "auto" (estimated), "exact" (no noise: fit the values) or a sd."""
    if text in ("auto", "exact"):
        return "auto" if text == "auto" else None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'exact' or a noise level >= 0, got {text!r}"
        ) from None
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'exact' or a noise level >= 0, got {text!r}"
        )
    return value


def describe_noise(noise: Any) -> str:
    """Words for a projection's noise setting, for the one-line reports."""
    if noise is None:
        return "exact fit"
    if noise == "auto":
        return "noise-aware, noise estimated from the values"
    return f"noise-aware, noise sd {noise:g}"


def project_noise_option(parser: argparse.ArgumentParser, *, video: bool = False) -> None:
    """``--project-noise auto|exact|SD`` (and ``video`` for stacks): how closely the
    projection fits the fibre values."""

    def project_noise(text: str) -> Any:
        if video and text == "video":
            return "video"
        return projection_noise(text)

    choices = "auto|video|exact|SD" if video else "auto|exact|SD"
    more = (
        "; 'video' (a stack of frames of one video) registers the frames and estimates it "
        "from each frame against the fusion of the others, much closer on fine texture "
        "(docs/video.md)"
        if video
        else ""
    )
    parser.add_argument(
        "--project-noise", type=project_noise, default="auto", metavar=choices,
        help="noise of the fibre values for the consistency projection: 'auto' estimates it "
        "from the values of each frame, a number gives it (image units), 'exact' fits the "
        f"values exactly (it also fits their noise){more} (default: auto; "
        "docs/consistency.md)",
    )  # fmt: skip


def load_any_model(spec: str) -> Any:
    """A model file, or ``pretrained`` / ``pretrained:NAME`` (a model shipped with the package)."""
    from ..io import load_model

    if spec == "pretrained" or spec.startswith("pretrained:"):
        from .._pretrained import DEFAULT_PRETRAINED, pretrained

        name = spec.partition(":")[2] or DEFAULT_PRETRAINED
        return pretrained(name)
    path = Path(spec)
    if not path.is_file():
        raise OSError(
            f"{path}: no such model file (or use 'pretrained' / 'pretrained:NAME'; "
            "`cycsr super-resolve --list-pretrained` lists them)"
        )
    return load_model(path)


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (``w_adv=1e-4``, ``normalise_vec=true``); a value that
    is not JSON is kept as a string. Parsed as data: nothing is evaluated."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def read_values(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a fibre-value array: a ``.npy`` file of shape ``(N,)`` or ``(T, N)``.

    Parameters
    ----------
    path : path-like
        ``.npy`` file (plain numeric; never unpickled).

    Returns
    -------
    ndarray
        The values as stored.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise CLIError(f"{path}: fibre values are read from a .npy file")
    if not path.is_file():
        raise OSError(f"{path}: no such file")
    try:
        values = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise CLIError(f"{path}: not a plain numeric .npy array ({error})") from error
    if values.ndim not in (1, 2) or values.dtype.kind not in "iuf":
        raise CLIError(f"{path}: expected a real (N,) or (T, N) array, got {values.shape}")
    return values


def loss_postfix(losses: dict[str, Any]) -> dict[str, str]:
    return {name: f"{float(value):.3g}" for name, value in (losses or {}).items()}


def format_losses(losses: dict[str, Any]) -> str:
    if not losses:
        return "no losses reported"
    return ", ".join(f"{k} {float(v):.4g}" for k, v in losses.items())


@contextlib.contextmanager
def stop_on_interrupt(trainer: Any) -> Any:
    """First Ctrl-C: finish the current iteration, checkpoint and stop; second: abort."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if is_main_process():
            print(
                f"\n{PROG}: stopping after this iteration (Ctrl-C again to abort)...",
                file=sys.stderr,
                flush=True,
            )
        trainer.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def finish_distributed() -> None:
    """Leave a torchrun process group cleanly (no-op when not distributed)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the examples' line breaks and show defaults where set."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "%(default)" not in text
            and action.default not in (None, False, argparse.SUPPRESS)
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def common_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback on errors",
    )
    return parent


def device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="torch device: auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps",
    )


def threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=positive_int, metavar="N",
        help="CPU threads torch may use (default: the CPUs that other processes leave free, "
        "looked at as the work runs: all cores on an idle machine, fewer on a busy one)",
    )  # fmt: skip


def precision_option(parser: argparse.ArgumentParser) -> None:
    from .._device import PRECISION_HELP, PRECISIONS

    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS, metavar="P", help=PRECISION_HELP
    )


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` to torch (commands also pass it on, so the library keeps it)."""
    threads = getattr(args, "threads", None)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, KeyError) or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text


# --------------------------------------------------------------------------------------------
# outputs: never an input, never two outputs on one file, writable before the work starts,
# no empty folder left behind by a failed command
# --------------------------------------------------------------------------------------------


def overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite", action="store_true",
        help="allow an output to replace one of this command's input files (refused by "
        "default: inputs are never overwritten)",
    )  # fmt: skip


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs(
    outputs: Any,
    inputs: Any,
    *,
    overwrite: bool = False,
) -> None:
    """Refuse outputs that are inputs, and two outputs that name the same file.

    Parameters
    ----------
    outputs : iterable of (str, path)
        ``(what, path)`` of every file the command will write, ``what`` naming the option
        (``"--out"``, ``"--values-out"``, ``"checkpoint"`` ...).
    inputs : iterable of path
        Every file the command reads (folders expanded to their files).
    overwrite : bool
        ``--overwrite``: an output may replace an input.

    Raises
    ------
    CLIError
        With the option and the path the user gave.
    """
    outputs = [(what, Path(p)) for what, p in outputs]
    inputs = [Path(p) for p in inputs if p is not None]
    for i, (what, path) in enumerate(outputs):
        for other_what, other in outputs[:i]:
            if _same_file(path, other):
                raise CLIError(
                    f"{other_what} {other} and {what} {path} name the same file; give each "
                    "output its own name"
                )
        if overwrite:
            continue
        for source in inputs:
            if _same_file(path, source):
                raise CLIError(
                    f"{what} {path} is also an input of this command ({source}); refusing to "
                    "overwrite an input: choose another output name (or pass --overwrite)"
                )


def check_writable(outputs: Any) -> None:
    """Fail now, naming the path given, when an output cannot be written.

    Each output's nearest existing folder must be a writable folder, and an existing output
    must be a writable file (not a folder).

    Parameters
    ----------
    outputs : iterable of (str, path)
        As for :func:`check_outputs`; a path ending in ``/`` or an existing folder is a
        folder to write into.
    """
    for what, given in outputs:
        path = Path(given)
        if path.exists() and not path.is_dir() and not os.access(path, os.W_OK):
            raise CLIError(f"{what} {given}: the file exists and is read-only")
        folder = path if path.is_dir() else path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise CLIError(f"{what} {given}: {folder} is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise CLIError(f"{what} {given}: cannot write in {folder} (no permission)")


class FolderMaker:
    """Create output folders, and on failure remove those it created that stayed empty.

    Use as a context manager around a command's work::

        with FolderMaker() as folders:
            folders.make(out_dir)
            ...  # an exception here removes out_dir again if nothing was written in it
    """

    def __init__(self) -> None:
        self.made: list[Path] = []

    def make(self, folder: str | os.PathLike[str]) -> Path:
        folder = Path(folder)
        missing = []
        probe = folder
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
            self.made.append(path)
        if not folder.is_dir():
            raise CLIError(f"{folder} is a file; expected a folder")
        return folder

    def __enter__(self) -> FolderMaker:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is None:
            return
        for path in reversed(self.made):
            with contextlib.suppress(OSError):
                path.rmdir()  # only an empty folder goes


def distinct_names(files: Any, tag: str, suffix_of: Any) -> list[str]:
    """Output file names ``{stem}{tag}{suffix}``, made distinct for inputs of one stem.

    ``d1/a.tif`` and ``d2/a.tif`` give ``d1_a_sr.tif`` and ``d2_a_sr.tif``; ``a.tif`` and
    ``a.png`` give ``a_tif_sr.tif`` and ``a_png_sr.tif``; a counter settles what remains.

    Examples
    --------
    >>> distinct_names([Path("d1/a.tif"), Path("d2/a.tif"), Path("b.npy")], "_sr",
    ...                lambda p: ".npy" if p.suffix == ".npy" else ".tif")
    ['d1_a_sr.tif', 'd2_a_sr.tif', 'b_sr.npy']
    """
    files = [Path(f) for f in files]
    by_stem: dict[str, list[int]] = {}
    for i, path in enumerate(files):
        by_stem.setdefault(path.stem, []).append(i)
    stems = [path.stem for path in files]
    for group in by_stem.values():
        if len(group) < 2:
            continue
        suffixes = {files[i].suffix.lower() for i in group}
        parents = {files[i].resolve().parent for i in group}
        for i in group:
            parts = [files[i].stem]
            if len(parents) > 1:
                parts.insert(0, files[i].resolve().parent.name or "root")
            if len(suffixes) > 1:
                parts.append(files[i].suffix.lower().lstrip("."))
            stems[i] = "_".join(parts)
    names = [f"{stem}{tag}{suffix_of(path)}" for stem, path in zip(stems, files)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if names.count(name) > 1:
            seen[name] = seen.get(name, 0) + 1
            names[i] = f"{stems[i]}-{seen[name]}{tag}{suffix_of(files[i])}"
    return names


def warn(message: str) -> None:
    """One warning line on stderr (rank 0 only)."""
    if is_main_process():
        print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)
