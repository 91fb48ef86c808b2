"""Atomic file writes: write beside the destination, then rename over it.

Every file the package writes (model files, checkpoints, fibre CSVs, images, reports) goes
through :func:`atomic_path`, so a reader never sees a half-written file and an error leaves
the destination untouched.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, make_parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary file exists (empty) when yielded, keeps the destination's suffix (writers
    that pick a format by suffix work) and gets the usual permissions (``0o666`` less the
    umask, like a plain ``open``). On error it is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : path-like
        Final destination.
    make_parents : bool, optional
        Create missing parent folders; otherwise a missing folder is an ``OSError``.

    Yields
    ------
    Path
        Where to write.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder; give a file name")
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise OSError(f"{path.parent}: no such folder")
    tmp = path.parent / f".{path.stem}.{uuid.uuid4().hex}{path.suffix}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created, data fsync'ed)."""
    path = Path(path)
    with atomic_path(path, make_parents=True) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return path
