"""Atomic file writes: write beside the destination, then rename over it.

Every file the package writes (model files, checkpoints, fibre CSVs, images, reports) goes
through :func:`atomic_path`, so a reader never sees a half-written file and an error leaves
the destination untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STALE_SECONDS", "atomic_path", "atomic_write_bytes", "clean_stale_temporaries"]

#: A temporary file of ours untouched for this long belongs to a writer that was killed.
STALE_SECONDS = 300.0

_TEMP = re.compile(r"^\.(?P<stem>.*)\.(?P<token>[0-9a-f]{32})(?P<suffix>\.[^.]*)?$")


def _is_our_temporary(name: str, stem: str | None, suffix: str | None) -> bool:
    """``.{stem}.{32 hex digits}{suffix}``: the name :func:`atomic_path` gives its files."""
    match = _TEMP.match(name)
    if match is None:
        return False
    if stem is not None and match["stem"] != stem:
        return False
    return suffix is None or (match["suffix"] or "") == suffix


def clean_stale_temporaries(
    folder: str | os.PathLike[str],
    *,
    stem: str | None = None,
    suffix: str | None = None,
    max_age: float = STALE_SECONDS,
) -> list[Path]:
    """Remove temporary files that :func:`atomic_path` left behind when a writer was killed.

    Only hidden files named like ours (``.{stem}.{32 hex digits}{suffix}``) and not modified
    for ``max_age`` seconds are removed (a writer that is still running keeps touching its
    file); nothing else is ever touched. Errors (permissions, a file gone meanwhile) are
    ignored.

    Parameters
    ----------
    folder : path-like
        Where to look (not recursive).
    stem, suffix : str, optional
        Only the temporaries of this destination name (``checkpoint``, ``.safetensors``).
    max_age : float
        Seconds since the last modification.

    Returns
    -------
    list of Path
        The files removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    now = time.time()
    pattern = f".{stem}.*" if stem is not None else ".*"
    try:
        candidates = list(folder.glob(pattern))
    except OSError:
        return removed
    for path in candidates:
        if not _is_our_temporary(path.name, stem, suffix):
            continue
        try:
            if not path.is_file() or now - path.stat().st_mtime < max_age:
                continue
            path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, make_parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary file exists (empty) when yielded, keeps the destination's suffix (writers
    that pick a format by suffix work) and gets the usual permissions (``0o666`` less the
    umask, like a plain ``open``). On error it is removed and ``path`` is left untouched.
    Temporaries of the same destination left by a killed writer (older than
    :data:`STALE_SECONDS`) are removed first.

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
    # leftovers of a writer of this file that was killed (only ours, only stale ones)
    clean_stale_temporaries(path.parent, stem=path.stem, suffix=path.suffix)
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
