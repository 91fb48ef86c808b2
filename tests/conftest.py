"""Shared fixtures for the napari-cycsr test suite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

#: Real fibre-bundle frames (PyFibreBundle test data), outside the repository: beside the
#: checkout in ``../shared/data/pyfibrebundle``, or where ``NAPARI_CYCSR_TEST_DATA`` points.
SHARED_DATA = Path(
    os.environ.get("NAPARI_CYCSR_TEST_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pyfibrebundle"
)


@pytest.fixture(autouse=True)
def models_folder(tmp_path_factory, monkeypatch):
    """Every test gets its own empty models folder (never the user's real one)."""
    folder = tmp_path_factory.mktemp("models")
    monkeypatch.setenv("NAPARI_CYCSR_MODELS", str(folder))
    return folder


@pytest.fixture(autouse=True)
def float32_by_default(monkeypatch):
    """``precision="auto"`` runs float32 in every test, whatever the host's CPU.

    On a CPU with native bfloat16 (AMX, AVX-512 BF16) "auto" takes bfloat16, whose results
    differ from float32 references by about 1e-3; the tests compare with such references, so
    they pin the check's answer (a test of the check itself replaces the cache). Tests that
    ask for "bf16" still get it.
    """
    from napari_cycsr import _device

    monkeypatch.setitem(_device._bf16_cache, "cpu", False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder with the real raw bundle frames; skips the test when it is not there."""
    if not (SHARED_DATA / "usaf1.tif").is_file():
        pytest.skip(f"real fibre-bundle frames not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def load_frame(shared_data):
    """Function ``name -> (H, W) uint8 array`` reading a frame of ``shared_data``."""
    from PIL import Image

    def _load(name: str) -> np.ndarray:
        with Image.open(shared_data / name) as im:
            return np.asarray(im).copy()

    return _load


@pytest.fixture
def small_sim():
    """A small deterministic pCLE simulation: 64x64 camera crop, default bundle, seed 0."""
    from skimage import data

    from napari_cycsr.simulate import simulate_pcle

    hr = data.camera()[200:264, 200:264]
    return simulate_pcle(hr, seed=0)


# --- fixtures of the napari widget tests (Qt is imported only when a widget test asks) ---


@pytest.fixture
def errors(monkeypatch):
    """Collect the error notifications the widgets show, instead of showing them."""
    from napari_cycsr._widgets import _worker

    shown: list[str] = []
    monkeypatch.setattr(_worker, "show_error", shown.append)
    return shown


@pytest.fixture
def registry():
    """The widgets' shared model registry, emptied before and after the test."""
    from napari_cycsr._widgets import _common

    _common.MODELS.clear()
    yield _common.MODELS
    _common.MODELS.clear()
