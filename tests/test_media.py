"""PNG grids and GIFs round-trip what was written."""

import imageio.v3 as iio
import numpy as np
import pytest

from pvm_mbrl import media


def test_grid_places_tiles():
    imgs = np.zeros((2, 3, 4, 5, 3), np.uint8)
    imgs[1, 2] = 200
    out = media.grid(imgs, pad=1, fill=7)
    assert out.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
    np.testing.assert_array_equal(out[6:10, 13:18], 200)
    assert out[0, 0, 0] == 7 and out[1, 1, 0] == 0


def test_gif_round_trip(tmp_path):
    frames = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)])
    path = media.save_gif(frames, tmp_path / "a.gif")
    back = iio.imread(path)
    assert back.shape[:3] == (3, 8, 8)
    np.testing.assert_allclose(back[..., :3].mean(axis=(1, 2, 3)), [0, 128, 255], atol=2)


def test_labelled_grid_writes_png(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (2, 2, 16, 16, 3), dtype=np.uint8)
    path = media.labelled_grid(imgs, ["a", "b"], ["x", "y"], tmp_path / "g.png", title="t")
    assert iio.imread(path).ndim == 3


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((2, 4, 4, 4), np.uint8)])
def test_bad_frames_raise(bad, tmp_path):
    with pytest.raises(ValueError, match=r"uint8 \[\.\.\., H, W, 3\]"):
        media.save_gif(bad, tmp_path / "x.gif")
