"""Atomic writes leave nothing behind: stale temporaries of killed writers are cleaned."""

from __future__ import annotations

import os
import time

from napari_cycsr._atomic import STALE_SECONDS, atomic_path, clean_stale_temporaries


def _age(path, seconds):
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_next_write_removes_stale_temporaries_of_the_same_file_only(tmp_path):
    stale = tmp_path / ".checkpoint.0123456789abcdef0123456789abcdef.safetensors"
    fresh = tmp_path / ".checkpoint.fedcba9876543210fedcba9876543210.safetensors"
    other = tmp_path / ".model.0123456789abcdef0123456789abcdef.safetensors"
    users = [tmp_path / ".checkpoint.notours.safetensors", tmp_path / ".hidden"]
    for p in (stale, fresh, other, *users):
        p.write_bytes(b"x")
    for p in (stale, other, *users):
        _age(p, STALE_SECONDS + 60)
    with atomic_path(tmp_path / "checkpoint.safetensors") as tmp:
        tmp.write_bytes(b"data")
    assert not stale.exists()  # a killed writer's leftover: gone
    assert fresh.exists()  # maybe a writer still running: kept
    assert other.exists()  # another destination's: not this write's business
    assert all(p.exists() for p in users)  # not named like ours: never touched
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == b"data"
    assert clean_stale_temporaries(tmp_path) == [other]
    assert all(p.exists() for p in users)
