"""BRISQUE (tamrf_xr.evaluation.brisque) against a second implementation: the scores the PyPI
package ``brisque`` 0.2.0 (libsvm, OpenCV) gives the same images, computed once with that
package and held here (it cannot be installed on numpy 2.4 nor without a C compiler)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tamrf_xr.evaluation.brisque import brisque_features, brisque_score


def scene(seed: int, size: int = 96) -> np.ndarray:
    """Parcels of different brightness with a smooth texture and a little noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), 2.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    parcels = np.kron(rng.uniform(0.05, 0.5, (size // 16, size // 16)), np.ones((16, 16)))
    return np.clip(0.6 * parcels + 0.3 * texture + 0.01 * rng.standard_normal((size, size)), 0, 1)


def variants() -> dict[str, np.ndarray]:
    base = scene(1)
    rng = np.random.default_rng(99)
    return {
        "scene1": base,
        "scene2": scene(2),
        "scene3-128px": scene(3, 128),
        "scene1+noise0.05": np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1),
        "scene1+blur2": ndimage.gaussian_filter(base, 2.0),
    }


# brisque 0.2.0: BRISQUE(url=False).score(np.stack([image] * 3, -1)) on numpy 2.3.5.
PACKAGE_SCORES = {
    "scene1": 44.542527495893154,
    "scene2": 52.29143816606708,
    "scene3-128px": 38.7452423163065,
    "scene1+noise0.05": 58.90118814304762,
    "scene1+blur2": 72.69239466721476,
}


@pytest.mark.parametrize("name", list(PACKAGE_SCORES))
def test_scores_equal_the_brisque_package(name: str) -> None:
    assert brisque_score(variants()[name]) == pytest.approx(PACKAGE_SCORES[name], abs=1e-6)


def test_noise_and_blur_make_the_score_worse() -> None:
    scores = {name: brisque_score(image) for name, image in variants().items()}
    assert scores["scene1+noise0.05"] > scores["scene1"] + 5
    assert scores["scene1+blur2"] > scores["scene1"] + 5


def test_flat_and_bad_images() -> None:
    assert np.isnan(brisque_score(np.full((32, 32), 0.3))), "no texture: no statistics"
    with pytest.raises(ValueError, match="at least 8 x 8"):
        brisque_features(np.zeros((4, 40)))
    with pytest.raises(ValueError, match="finite"):
        image = scene(1)
        image[3, 3] = np.nan
        brisque_features(image)


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("name", "band", "t", "expected"),
    [
        ("openeo-gfmap/test_optical_cube.nc", "S2-L2A-B04", 4, 18.33228182375271),
        ("openeo-gfmap/test_optical_cube.nc", "S2-L2A-B08", 17, 33.413948885928875),
        ("worldcereal/worldcereal_preprocessed_inputs.nc", "S2-L2A-B08", 7, 7.262007450282653),
    ],
)
def test_real_sentinel2_bands_score_as_with_the_package(
    real_data_dir, name: str, band: str, t: int, expected: float
) -> None:
    from pipelines.evaluation.data import read_openeo_uint16

    dn = read_openeo_uint16(real_data_dir / name)[band].values[t]
    image = np.clip(dn.astype(np.float64) / 10000.0, 0.0, 1.0)
    assert brisque_score(image) == pytest.approx(expected, abs=1e-6)
