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
