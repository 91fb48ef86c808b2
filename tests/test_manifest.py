"""The npe2 manifest validates and every command points at an importable callable."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

MANIFEST = Path(__file__).parents[1] / "src" / "napari_cycsr" / "napari.yaml"


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_file(MANIFEST)


def test_manifest_validates(manifest):
    assert manifest.name == "napari-cycsr"
    widget_names = {w.display_name for w in manifest.contributions.widgets}
    assert widget_names == {"Fibres", "Train", "Super-resolve", "Evaluate", "Rate", "Video"}
    assert {s.key for s in manifest.contributions.sample_data} == {
        "synthetic_pcle",
        "raw_bundle_frame",
        "synthetic_pcle_video",
    }
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories and "*.mp4" in reader.filename_patterns


def test_every_command_resolves(manifest):
    pytest.importorskip("napari")
    for command in manifest.contributions.commands:
        module_name, _, attr = command.python_name.partition(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attr)), command.python_name


def test_menus_reference_declared_commands(manifest):
    commands = {c.id for c in manifest.contributions.commands}
    for menu_id, items in manifest.contributions.menus.items():
        assert menu_id.startswith("napari/layers/")
        for item in items:
            assert item.command in commands


def test_installed_plugin_uses_this_manifest(manifest):
    pm = npe2.PluginManager.instance()
    pm.discover()
    installed = pm.get_manifest("napari-cycsr")
    assert [c.id for c in installed.contributions.commands] == [
        c.id for c in manifest.contributions.commands
    ]
