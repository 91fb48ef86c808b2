"""Tests of batch super-resolution of files (batch.py)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from napari_cycsr import batch
from napari_cycsr._imageio import read_image, write_image
from napari_cycsr.batch import folder_inputs, image_shape, iter_super_resolve_files, output_paths


def test_doctests():
    assert doctest.testmod(batch, raise_on_error=False).failed == 0


def test_output_names_never_overwrite(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "sub" / "a.png"
    (tmp_path / "a_sr.tif").write_bytes(b"earlier")
    assert [p.name for p in output_paths([a])] == ["a_sr-2.tif"]
    out = output_paths([a, b], tmp_path / "out")
    assert [p.name for p in out] == ["a_sr.tif", "a_sr-2.tif"]
    assert output_paths([tmp_path / "v.npy"])[0].name == "v_sr.npy"
    # an input named like a result is never its own output
    x = tmp_path / "x_sr.tif"
    assert x not in output_paths([tmp_path / "x.tif", x])


def test_folder_inputs_and_shapes(tmp_path):
    write_image(tmp_path / "f1.tif", np.zeros((3, 20, 30), np.float32))
    write_image(tmp_path / "f2.png", np.zeros((20, 30), np.uint8))
    write_image(tmp_path / "f3.npy", np.zeros((20, 30), np.float32))
    write_image(tmp_path / "f1_sr.tif", np.zeros((20, 30), np.float32))
    write_image(tmp_path / "f1_sr-2.tif", np.zeros((20, 30), np.float32))
    files = folder_inputs(tmp_path)
    assert [p.name for p in files] == ["f1.tif", "f2.png", "f3.npy"]
    assert [image_shape(p) for p in files] == [(3, 20, 30), (20, 30), (20, 30)]
    with pytest.raises(OSError, match="no such folder"):
        folder_inputs(tmp_path / "missing")
    only = tmp_path / "only"
    only.mkdir()
    write_image(only / "a_sr.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="only earlier results"):
        folder_inputs(only)


def test_files_are_written_one_by_one(tmp_path):
    torch = pytest.importorskip("torch")
    from napari_cycsr.models import SRModel

    torch.manual_seed(0)
    model = SRModel.new("tiny")
    inputs = []
    for i in range(3):
        inputs.append(write_image(tmp_path / f"{i}.tif", np.full((16, 16), i, np.float32)))
    outputs = output_paths(inputs, tmp_path / "out")
    gen = iter_super_resolve_files(model, inputs, outputs, device="cpu")
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            written = stop.value
            break
    assert written == outputs and all(p.is_file() for p in outputs)
    assert [e.index for e in events if e.done == e.total] == [0, 1, 2]
    assert read_image(outputs[0]).shape == (16, 16)
    # stopping after the first file keeps it and writes nothing else
    again = output_paths(inputs, tmp_path / "again")
    gen = iter_super_resolve_files(model, inputs, again, device="cpu")
    for event in gen:
        if event.index == 1:
            gen.close()
            break
    assert again[0].is_file() and not again[1].exists() and not again[2].exists()
