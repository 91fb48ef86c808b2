"""Tests of the models kept in the session and in the models folder (models_store.py)."""

from __future__ import annotations

import doctest

import pytest

from napari_cycsr import models_store
from napari_cycsr.models_store import (
    ModelRegistry,
    model_details,
    models_folder,
    models_in_session,
    save_to_folder,
    saved_models,
)

torch = pytest.importorskip("torch")


def _model(**metadata):
    from napari_cycsr.models import SRModel

    torch.manual_seed(0)
    return SRModel.new("tiny", metadata=dict(metadata))


def test_doctests():
    assert doctest.testmod(models_store, raise_on_error=False).failed == 0


def test_registry_never_replaces_and_is_public():
    import napari_cycsr

    registry = ModelRegistry()
    seen = []
    registry.changed.connect(lambda: seen.append(len(registry)))
    a, b = _model(), _model()
    assert registry.register("m", a) == "m"
    assert registry.register("m", b) == "m (2)"
    assert registry.names() == ["m (2)", "m"] and registry.get("m") is a
    assert registry.register("m", b, replace=True) == "m"
    assert registry.get("m") is b and seen == [1, 2, 2]
    with pytest.raises(KeyError, match="known"):
        registry.get("x")
    with pytest.raises(ValueError, match="non-empty"):
        registry.register(" ", a)
    assert napari_cycsr.models_in_session is models_in_session
    models_store.SESSION.clear()
    models_store.SESSION.register("console", a)
    try:
        assert napari_cycsr.models_in_session() == {"console": a}
    finally:
        models_store.SESSION.clear()


def test_models_folder_lists_saved_models_with_details(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CYCSR_MODELS", str(tmp_path / "store"))
    assert models_folder() == tmp_path / "store" and saved_models() == []
    meta = {"train_config": {"preset": "tiny", "scale": 1, "target": "natural"},
            "iteration": 40, "fibre_spacing": 2.63, "seed": 3,
            "training_data": ["a (64x64)", "b (64x64)", "c", "d"]}  # fmt: skip
    first = save_to_folder(_model(**meta), "my model: v1/2")
    second = save_to_folder(_model(**meta), "my model: v1/2")
    assert first.parent == tmp_path / "store" and first != second
    assert first.name == "my_model_v1_2.safetensors" and second.name.endswith("_2.safetensors")
    (tmp_path / "store" / "x.checkpoint.safetensors").write_bytes(b"")
    (tmp_path / "store" / "junk.safetensors").write_bytes(b"not a model")
    listed = saved_models()
    assert {m.path for m in listed} == {first, second}
    assert all(m.name == "my model: v1/2" for m in listed)
    assert listed[0].details == (
        "preset tiny, x1, fibres 2.63 px apart, trained on a (64x64), b (64x64), c and 1 more, "
        "target natural, 40 iterations, seed 3"
    )
    assert model_details({}) == "no details recorded"


def test_default_folder_is_the_user_data_dir(monkeypatch):
    from platformdirs import user_data_path

    monkeypatch.delenv("NAPARI_CYCSR_MODELS", raising=False)
    assert models_folder() == user_data_path("napari-cycsr", appauthor=False) / "models"
