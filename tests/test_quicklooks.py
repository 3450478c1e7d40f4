"""Quicklooks (pipelines.quicklooks): the stretch and its NaN colour, the date shown, what the
figures plot, PNG size and decoding, and the files written for a store (a synthetic store of
test_level3's fake tiles). Real runs writing them: test_deployment (the files, their embedding
in the summary artifact, the pixel in the tile's summary and record) and test_production (the
summary artifact)."""

from __future__ import annotations

import io
import logging

import matplotlib.image
import numpy as np
import pytest
from test_level3 import PROVENANCE, TILES, TIMES, fake_tile

from pipelines import quicklooks
from pipelines.level3 import Level3Config, create_store, read_definition, write_tile
from pipelines.quicklooks import (
    DPIS,
    FIGSIZE_IN,
    MAX_PNG_BYTES,
    NEUTRAL,
    best_supported_date,
    pixel_figure,
    png_bytes,
    rgb_figure,
    stretch_rgb,
    write_quicklooks,
)


def figure_size(dpi: int) -> tuple[int, int]:
    """(rows, columns) of a quicklook PNG at ``dpi``."""
    return round(FIGSIZE_IN[1] * dpi), round(FIGSIZE_IN[0] * dpi)


def decoded(png: bytes) -> np.ndarray:
    return matplotlib.image.imread(io.BytesIO(png))


def test_the_stretch_maps_the_2nd_and_98th_percentiles_and_nan_is_neutral():
    # 101 pixels with red 0..100, green 0..200, blue constant; a 102nd pixel without red.
    red = np.append(np.arange(101.0), np.nan)
    green = np.append(2 * np.arange(101.0), 50.0)
    blue = np.full(102, 7.0)
    rgb = stretch_rgb(np.stack([red, green, blue])[:, None, :])
    assert rgb.shape == (1, 102, 3)
    # Percentiles of the 101 pixels with all three bands: red 2 and 98, green 4 and 196.
    assert rgb[0, 50].tolist() == pytest.approx([(50 - 2) / 96, (100 - 4) / 192, 0.5])
    assert rgb[0, 2, 0] == pytest.approx(0.0) and rgb[0, 98, 0] == pytest.approx(1.0)
    assert rgb[0, 0].tolist()[:2] == [0.0, 0.0] and rgb[0, 100].tolist()[:2] == [1.0, 1.0]
    assert tuple(rgb[0, 101]) == NEUTRAL, "a pixel without a value in any band"
    assert (stretch_rgb(np.full((3, 2, 2), np.nan)) == NEUTRAL).all()
    with pytest.raises(ValueError, match="give \\(3, H, W\\)"):
        stretch_rgb(np.zeros((2, 4, 4)))


def test_the_date_shown_is_the_one_nearest_to_clear_observations():
    days = np.array(
        [
            [[5, 5], [-1, np.nan]],  # mean 5 over the pixels with a clear observation
            [[1, 3], [-1, -1]],  # mean 2
            [[-1, -1], [-1, -1]],  # never clear: left out
        ]
    )
    assert best_supported_date(days) == 1
    assert best_supported_date(np.full((5, 3, 3), -1.0)) == 2, "none clear: the middle date"


def test_the_rgb_figure_shows_the_picture_beside_its_quality_layer():
    rgb = np.zeros((4, 6, 3))
    days = np.array([[0, 3, -1, np.nan, 10, 2]] * 4, dtype=float)
    figure = rgb_figure(rgb, days, "EPSG:32631, 2024-03-11")
    picture, quality, bar = figure.axes
    assert np.array_equal(picture.images[0].get_array(), rgb)
    shown = quality.images[0].get_array()
    assert shown.mask[0].tolist() == [False, False, True, True, False, False], "-1, NaN: grey"
    assert "days" in bar.get_ylabel()


def test_the_pixel_figure_plots_a_line_per_band_and_a_point_per_clear_observation():
    times = np.array(["2024-03-01", "2024-03-15", "2024-04-01"], "datetime64[ns]")
    predicted = {"S2_B4": np.array([0.1, 0.12, 0.11]), "S2_B8": np.array([0.3, 0.32, 0.35]),
                 "LS_B10": np.array([285.0, 287.0, 290.0])}  # fmt: skip
    observed = {"S2_B4": (["2024-03-03", "2024-03-20"], [0.11, 0.12]),
                "S2_B8": (["2024-03-03", "2024-03-20"], [0.31, 0.33]),
                "LS_B10": (["2024-03-10"], [286.5])}  # fmt: skip
    figure = pixel_figure(times, predicted, observed, "a pixel")
    reflectance, thermal = figure.axes
    assert sorted(line.get_label() for line in reflectance.lines) == [
        "S2_B4 predicted", "S2_B8 predicted"]  # fmt: skip
    assert [line.get_label() for line in thermal.lines] == ["LS_B10 predicted"]
    assert np.allclose(thermal.lines[0].get_ydata(), predicted["LS_B10"])
    points = {c.get_label().split()[0]: c.get_offsets() for c in (*reflectance.collections,
                                                                 *thermal.collections)}  # fmt: skip
    assert {band: len(p) for band, p in points.items()} == {"S2_B4": 2, "S2_B8": 2, "LS_B10": 1}
    assert np.allclose(points["LS_B10"][:, 1], [286.5])
    assert thermal.get_ylabel() == "LS_B10 (K)"


def test_pngs_decode_at_the_figure_size_and_shrink_to_fit():
    rng = np.random.default_rng(0)
    noisy = stretch_rgb(rng.uniform(0, 0.3, (3, 300, 300)))  # the worst case for PNG
    figure = rgb_figure(noisy, rng.integers(-1, 30, (300, 300)).astype(float), "noise")
    png = png_bytes(figure)
    assert png.startswith(b"\x89PNG") and len(png) <= MAX_PNG_BYTES
    assert decoded(png).shape[:2] in {figure_size(dpi) for dpi in DPIS}
    assert decoded(png_bytes(figure, max_bytes=1)).shape[:2] == figure_size(DPIS[-1])
    smooth = rgb_figure(np.full((50, 50, 3), 0.4), np.zeros((50, 50)), "flat")
    assert decoded(png_bytes(smooth)).shape[:2] == figure_size(DPIS[0])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two of test_level3's fake tiles in a store; date 3 is the best supported."""
    path = create_store(tmp_path_factory.mktemp("ql") / "l3.zarr", TILES, TIMES,
                        Level3Config(), PROVENANCE)  # fmt: skip
    for seed, tile in enumerate(TILES[:2]):
        data = fake_tile(tile, seed)
        days = np.array([9, 20, 30, 2, 12], np.int16)[:, None, None]
        shape = data["s2_days_to_clear"].shape
        data["s2_days_to_clear"] = (("time", "y", "x"), np.broadcast_to(days, shape))
        write_tile(path, tile, data)
    return path


def pixel_of(tile) -> dict:
    y, x = tile.grid().coords()
    observed = {
        "S2_B4": {"dates": ["2024-03-05"], "values": [0.2]},
        "LS_B10": {"dates": ["2024-03-12", "2024-03-28"], "values": [290.0, 291.0]},
    }
    return {"x": float(x[30]), "y": float(y[30]), "epsg": tile.epsg, "observations": observed}


def test_a_store_gets_its_picture_and_a_pixel_series_next_to_it(store, tmp_path):
    tile = TILES[1]
    summary = {"level3": {"stores": [str(store)]},
               "tiles": [{"tile": tile.tile_id, "pixel": pixel_of(tile)}]}  # fmt: skip
    written = write_quicklooks(summary, tmp_path)
    epsg = read_definition(store).epsg
    date = str(TIMES[3].date())  # the best supported date
    directory = tmp_path / "level3" / "quicklooks"
    assert written == [str(directory / f"{epsg}-rgb-{date}.png"),
                       str(directory / f"{epsg}-pixel-{tile.tile_id}.png")]  # fmt: skip
    for location in written:
        png = (directory / location.rsplit("/", 1)[1]).read_bytes()
        assert len(png) <= MAX_PNG_BYTES
        assert decoded(png).shape[:2] == figure_size(DPIS[0])
    again = write_quicklooks({"level3": {"stores": [str(store)]}, "tiles": []}, tmp_path)
    assert again == written[:1], "no tile computed now: the picture alone"


def test_a_large_store_is_read_one_tile_window(store, monkeypatch):
    definition = read_definition(store)
    whole = quicklooks._window(definition, TILES[1].tile_id)
    assert (whole[0].stop - whole[0].start, whole[1].stop - whole[1].start) == definition.shape[1:]
    monkeypatch.setattr(quicklooks, "MAX_WINDOW_PX", 10)
    region = definition.region(TILES[1])
    assert quicklooks._window(definition, TILES[1].tile_id) == (region["y"], region["x"])


def test_a_store_that_cannot_be_drawn_is_logged_and_skipped(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pipelines.quicklooks"):
        written = write_quicklooks({"level3": {"stores": [str(tmp_path / "nothing.zarr")]},
                                    "tiles": []}, tmp_path)  # fmt: skip
    assert written == []
    assert "no quicklook of" in caplog.text and "products are unaffected" in caplog.text
