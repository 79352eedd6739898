"""The dSprites-like generator, checked on rendered pixels: centroid, area, orientation, shape."""

import math

import numpy as np
import pytest

from ppl_vae.data.dsprites import CENTRE_LO, CENTRE_SPAN, HALF_SIZE, IMAGE, DSpritesFile, DSpritesLike
from ppl_vae.registry import ConfigError

D = DSpritesLike()


def moments(img):
    rows, cols = np.nonzero(img[0])
    x, y = cols + 0.5, -(rows + 0.5)  # y up, as the generator's orientation
    return len(rows), x.mean(), -y.mean(), np.cov(np.stack([x, y]))


def test_index_layout_matches_the_original():
    assert D.bases.tolist() == [245760, 40960, 1024, 32, 1] and len(D) == 737280
    f = np.array([[2, 5, 39, 31, 31], [1, 3, 7, 0, 12]])
    assert D.index_of(f).tolist() == [737279, 1 * 245760 + 3 * 40960 + 7 * 1024 + 12]
    assert (D.factors_of(D.index_of(f)) == f).all()


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_centroid_is_where_the_position_factors_say(shape):
    for px, py in [(0, 0), (31, 10), (16, 31)]:
        _, cx, cy, _ = moments(D.render([[shape, 5, 0, px, py]])[0])
        want_x = (CENTRE_LO + CENTRE_SPAN * px / 31) * IMAGE
        want_y = (CENTRE_LO + CENTRE_SPAN * py / 31) * IMAGE
        tol = 0.6 if shape < 2 else 2.0  # the heart's centroid sits above its bounding box's centre
        assert abs(cx - want_x) < 0.6 and abs(cy - want_y) < tol


def test_area_follows_scale_squared_and_the_shapes_closed_forms():
    r = HALF_SIZE * IMAGE
    # averaged over 64 positions, so the sub-pixel placement averages out of the pixel count
    grid = [(px, py) for px in range(8) for py in range(8)]
    square = [np.mean([D.render([[0, s, 0, px, py]]).sum() for px, py in grid]) for s in (0, 5)]
    ellipse = np.mean([D.render([[1, 5, 0, px, py]]).sum() for px, py in grid])
    assert square[1] == pytest.approx((2 * r) ** 2, rel=0.02)
    assert square[0] == pytest.approx(r**2, rel=0.03)  # scale 0.5: a quarter of the area
    assert ellipse == pytest.approx(math.pi * r * r / 2, rel=0.03)
    areas = [moments(D.render([[0, 5, o, 16, 16]])[0])[0] for o in range(0, 40, 3)]
    assert max(areas) / min(areas) < 1.12  # rotation keeps the area


def test_ellipse_major_axis_follows_orientation():
    for o in range(0, 40, 4):
        theta = D.values[2][o]
        cov = moments(D.render([[1, 5, o, 16, 16]])[0])[3]
        w, v = np.linalg.eigh(cov)
        major = math.atan2(v[1, 1], v[0, 1]) % math.pi
        diff = abs(major - theta % math.pi)
        assert min(diff, math.pi - diff) < 0.08


def test_heart_points_down_and_has_two_lobes():
    img = D.render([[2, 5, 0, 16, 16]])[0, 0]
    rows = np.nonzero(img.any(1))[0]
    widths = img[rows].sum(1)
    assert widths[-1] < widths.max() / 4 and np.argmax(widths) < len(widths) / 2  # lobes above, a point below
    cols = img[rows[0]]  # the top row: the notch between the two lobes leaves a gap
    runs = np.diff(np.concatenate([[0], cols, [0]]))
    assert (runs == 1).sum() == 2


def test_reduced_grid_and_errors(tmp_path):
    small = DSpritesLike((3, 2, 4, 8, 8))
    x, f = small.dataset()
    assert x.shape == (1536, 1, 64, 64) and set(np.unique(x)) == {0.0, 1.0}
    assert (small.factors_of(np.arange(1536)) == f).all()
    with pytest.raises(ConfigError, match="sizes"):
        DSpritesLike((4, 2, 2, 2, 2))
    with pytest.raises(ConfigError, match="not found"):
        DSpritesFile(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(ConfigError, match="needs arrays"):
        DSpritesFile(str(tmp_path / "bad.npz"))
