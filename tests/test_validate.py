"""The one colour rule: equal-channel RGB(A) is grey everywhere, true colour is refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_cycsr import _validate
from napari_cycsr._imageio import read_image
from napari_cycsr.metrics import gcf, psnr
from napari_cycsr.simulate import simulate_pcle


def _rgba(grey: np.ndarray) -> np.ndarray:
    out = np.empty((*grey.shape, 4), dtype=grey.dtype)
    out[..., :3] = grey[..., None]
    out[..., 3] = np.iinfo(grey.dtype).max if grey.dtype.kind in "iu" else 1
    return out


@pytest.fixture
def grey_frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (40, 48), dtype=np.uint8)


def test_looks_rgb_shapes():
    assert _validate.looks_rgb((64, 64, 3))
    assert _validate.looks_rgb(np.zeros((2, 64, 64, 4)))
    assert not _validate.looks_rgb((64, 64))
    assert not _validate.looks_rgb((5, 64, 64))
    assert not _validate.looks_rgb((64, 4, 3))  # a 4-pixel-wide image is not colour


def test_equal_channels_become_grey(grey_frame):
    rgba = _rgba(grey_frame)
    out = _validate.as_grey(rgba)
    assert out.dtype == np.uint8 and out.shape == grey_frame.shape
    np.testing.assert_array_equal(out, grey_frame)
    rgb = rgba[..., :3]
    np.testing.assert_array_equal(_validate.as_grey(rgb), grey_frame)


def test_grey_input_is_returned_unchanged(grey_frame):
    assert _validate.as_grey(grey_frame) is grey_frame


def test_true_colour_is_refused_with_the_fix(grey_frame):
    rgb = _rgba(grey_frame)[..., :3].copy()
    rgb[0, 0, 1] = rgb[0, 0, 0] ^ 1
    with pytest.raises(ValueError, match="channels differ.*rgb2gray"):
        _validate.as_grey(rgb, name="frame")
    lum = _validate.as_grey(rgb, colour="luminance")
    assert lum.dtype == np.float32 and lum.shape == grey_frame.shape
    with pytest.raises(ValueError, match="colour must be"):
        _validate.as_grey(rgb, colour="bogus")


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_reader_reads_equal_channel_rgba_files_as_grey(tmp_path, grey_frame, suffix):
    path = tmp_path / f"frame{suffix}"
    Image.fromarray(_rgba(grey_frame), mode="RGBA").save(path)
    out = read_image(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, grey_frame)


def test_reader_refuses_true_colour_unless_asked(tmp_path, grey_frame):
    rgb = np.stack([grey_frame, grey_frame[::-1], grey_frame], axis=-1)
    path = tmp_path / "colour.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    with pytest.raises(ValueError, match="channels differ"):
        read_image(path)
    assert read_image(path, grey=True).shape == grey_frame.shape


def test_api_accepts_equal_channel_rgba_everywhere():
    from napari_cycsr.fibres import FibreBundle

    rng = np.random.default_rng(1)
    hr = rng.random((64, 64)).astype(np.float32)
    sim = simulate_pcle(hr, seed=0)
    lr8 = np.round(np.clip(sim.lr, 0, 1) * 255).astype(np.uint8)
    rgba = _rgba(lr8)
    bundle = sim.bundle
    np.testing.assert_allclose(bundle.vectorize(rgba), bundle.vectorize(lr8))
    np.testing.assert_allclose(bundle.core_values(rgba), bundle.core_values(lr8))
    assert gcf(rgba) == pytest.approx(gcf(lr8))
    assert psnr(rgba, lr8, data_range=255) == np.inf
    # a raw frame of cores (noise alone is refused: "no fibre bundle found")
    from napari_cycsr.simulate import hexagonal_lattice

    yy, xx = np.mgrid[:96, :96]
    raw = np.zeros((96, 96))
    for cy, cx in hexagonal_lattice((96, 96), 4.0, seed=2):
        raw += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
    raw = np.clip(raw / raw.max() + 0.02 * rng.random((96, 96)), 0, 1)
    detected_grey = FibreBundle.detect(np.round(raw * 255).astype(np.uint8), spacing=4.0)
    detected_rgba = FibreBundle.detect(_rgba(np.round(raw * 255).astype(np.uint8)), spacing=4.0)
    np.testing.assert_array_equal(detected_grey.centres, detected_rgba.centres)


def test_widget_layers_follow_the_colour_rule(grey_frame):
    """The widgets apply the same rule: an equal-channel RGB layer is grey, colour refused."""
    from napari.layers import Image as ImageLayer

    from napari_cycsr._widgets._common import image_data_2d, require_layer

    layer = ImageLayer(_rgba(grey_frame)[..., :3], rgb=True, name="camera")
    assert require_layer(layer, "the image") is layer
    np.testing.assert_array_equal(image_data_2d(layer), grey_frame)
    colour = _rgba(grey_frame)[..., :3].copy()
    colour[0, 0, 1] ^= 1
    with pytest.raises(ValueError, match="channels differ"):
        require_layer(ImageLayer(colour, rgb=True, name="photo"), "the image")
