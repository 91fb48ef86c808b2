"""The package's layering: torch-free settings, headless core (the import-linter contracts in
pyproject.toml are checked by `lint-imports` in .ci/run; these are the run-time halves)."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(out.stdout.split())


def test_settings_and_the_train_commands_help_load_no_torch():
    loaded = _modules_after(
        "import napari_cycsr.config as c\n"
        "assert 'default' in c.PRESETS and 'natural' in c.TARGET_KINDS\n"
        "from napari_cycsr.cli import build_parser\n"
        "build_parser()"
    )
    assert "torch" not in loaded


def test_the_library_loads_no_qt_or_napari():
    loaded = _modules_after(
        "import napari_cycsr as cs, napari_cycsr.training, napari_cycsr.inference, "
        "napari_cycsr.video, napari_cycsr.cli, napari_cycsr.batch, napari_cycsr.models_store"
    )
    assert not {"napari", "magicgui", "qtpy", "PyQt6", "PyQt5"} & loaded


def test_presets_are_the_same_objects_everywhere():
    from napari_cycsr import PRESETS, config, models

    assert models.PRESETS is config.PRESETS is PRESETS
    assert models.get_preset("tiny") == config.PRESETS["tiny"]
