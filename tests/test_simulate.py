"""The scene simulator: determinism and physical sanity (pure computation, no files)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from tamrf_xr.bands import BANDS, S2_BOA_ADD_OFFSET_DN, S2_SCALE, band
from tamrf_xr.simulate import LandCover, Simulation, SimulationConfig
from tamrf_xr.simulate.geometry import landsat_epsg, landsat_y_shift
from tamrf_xr.simulate.sensors import LandsatObservation, S2Observation
from tamrf_xr.simulate.weather import CLOUD_THICK_OPACITY, daily_weather

CHANNEL = {b.name: i for i, b in enumerate(BANDS)}

SMALL = SimulationConfig(
    seed=3, width_px=60, height_px=60, start=dt.date(2022, 1, 10), end=dt.date(2022, 3, 10)
)


@pytest.fixture(scope="module")
def year() -> Simulation:
    """A full year over a 1.2 km x 1.2 km region."""
    return Simulation(SimulationConfig(seed=11, width_px=120, height_px=120))


def _first(simulation: Simulation, predicate):
    for acquisition in simulation.acquisitions:
        if predicate(acquisition):
            return acquisition
    raise AssertionError("no acquisition matches")


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_identical_truth_and_items():
    a, b = Simulation(SMALL), Simulation(SMALL)
    assert [x.item_id for x in a.acquisitions] == [x.item_id for x in b.acquisitions]
    np.testing.assert_array_equal(a.truth(17), b.truth(17))
    for acquisition_a, acquisition_b in zip(a.acquisitions[:6], b.acquisitions[:6], strict=True):
        item_a, item_b = a.item(acquisition_a), b.item(acquisition_b)
        assert item_a.assets.keys() == item_b.assets.keys()
        for key in item_a.assets:
            np.testing.assert_array_equal(item_a.assets[key].data, item_b.assets[key].data)


def test_other_seed_gives_other_scene():
    a = Simulation(SMALL)
    b = Simulation(dataclasses.replace(SMALL, seed=4))
    assert not np.array_equal(a.landscape.landcover, b.landscape.landcover)
    assert not np.allclose(a.truth(0), b.truth(0))


def test_part_of_a_period_has_the_same_landscape_and_truth():
    """Streams are derived per purpose: a shorter run sees the same surface on the same day."""
    short = Simulation(dataclasses.replace(SMALL, end=dt.date(2022, 1, 20)))
    full = Simulation(SMALL)
    np.testing.assert_array_equal(short.landscape.landcover, full.landscape.landcover)
    np.testing.assert_array_equal(short.truth(5)[:7], full.truth(5)[:7])


# -- truth: physically plausible -------------------------------------------------------------


def test_reflectance_and_temperature_ranges(year: Simulation):
    for day in (15, 100, 190, 280, 350):
        truth = year.truth(day)
        reflectance = np.delete(truth, CHANNEL["LS_B10"], axis=0)
        assert reflectance.min() >= 0.0 and reflectance.max() <= 1.0
        lst = truth[CHANNEL["LS_B10"]]
        assert lst.min() > 250.0 and lst.max() < 335.0


def test_vegetation_is_green_in_summer_and_crops_are_bare_in_winter(year: Simulation):
    lc = year.landscape.landcover
    summer_crop = lc == LandCover.SUMMER_CROP
    assert summer_crop.sum() > 100

    def ndvi(day):
        t = year.truth(day)
        red, nir = t[CHANNEL["S2_B4"]], t[CHANNEL["S2_B8"]]
        return (nir - red) / (nir + red)

    july, february = ndvi(195), ndvi(40)
    assert np.median(july[summer_crop]) > 0.7
    assert np.median(february[summer_crop]) < 0.35
    conifer = lc == LandCover.CONIFER_FOREST
    if conifer.sum() > 50:  # evergreen: green in both seasons
        assert np.median(february[conifer]) > 0.6
    water = lc == LandCover.WATER
    assert np.median(year.truth(195)[CHANNEL["S2_B8"]][water]) < 0.03


def test_land_surface_temperature_follows_season_vegetation_and_water(year: Simulation):
    lst = CHANNEL["LS_B10"]
    summer, winter = year.truth(200)[lst], year.truth(15)[lst]
    assert summer.mean() - winter.mean() > 8.0
    lc = year.landscape.landcover
    bare = (lc == LandCover.SUMMER_CROP) | (lc == LandCover.FALLOW)
    forest = (lc == LandCover.DECIDUOUS_FOREST) | (lc == LandCover.CONIFER_FOREST)
    water = lc == LandCover.WATER
    # Late spring: summer crops not yet emerged (bare, hot); trees transpire; water lags.
    may = year.truth(130)[lst]
    assert may[bare].mean() > may[forest].mean() + 3.0
    assert may[water].mean() < may[bare].mean() - 5.0


def test_landsat_and_sentinel2_bands_are_similar_but_not_identical(year: Simulation):
    truth = year.truth(190)
    # Bandpass differences of a few percent, as harmonisation studies (HLS) report; Landsat B5
    # and S2 B8A share their centre at 865 nm and the SWIR pairs nearly coincide, as in reality.
    differing = [("LS_B5", "S2_B8"), ("LS_B4", "S2_B4"), ("LS_B3", "S2_B3"), ("LS_B2", "S2_B2")]
    close = [("LS_B5", "S2_B8A"), ("LS_B6", "S2_B11"), ("LS_B7", "S2_B12")]
    for landsat, s2 in differing + close:
        a, b = truth[CHANNEL[landsat]].ravel(), truth[CHANNEL[s2]].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.95, (landsat, s2)
        relative = np.mean(np.abs(a - b) / b)
        if (landsat, s2) in differing:
            assert 0.01 < relative < 0.15, f"{landsat} vs {s2}: {relative:.4f}"
        else:
            assert relative < 0.01, f"{landsat} vs {s2}: {relative:.4f}"
    # The narrow Landsat NIR band sits where S2 B8A does, not B8.
    nir = truth[CHANNEL["LS_B5"]]
    assert (
        np.abs(nir - truth[CHANNEL["S2_B8A"]]).mean() < np.abs(nir - truth[CHANNEL["S2_B8"]]).mean()
    )


def test_southern_hemisphere_seasons_are_flipped():
    south = Simulation(
        SimulationConfig(seed=11, width_px=60, height_px=60, center_lon=147.0, center_lat=-35.0)
    )
    lst = CHANNEL["LS_B10"]
    assert south.truth(15)[lst].mean() > south.truth(195)[lst].mean() + 5.0
    assert south.grid.epsg == 32755 and landsat_epsg(south.grid.epsg) == 32655
    assert landsat_y_shift(south.grid.epsg) == -10_000_000.0 and landsat_y_shift(32631) == 0.0


# -- weather ---------------------------------------------------------------------------------


@pytest.mark.parametrize("requested", [0.2, 0.5, 0.8])
def test_long_run_cloud_cover_matches_the_request(requested):
    config = SimulationConfig(
        seed=5, start=dt.date(2000, 1, 1), end=dt.date(2029, 12, 31), cloud_cover_mean=requested
    )
    cover = daily_weather(config).cloud_cover
    assert abs(cover.mean() - requested) < 0.04
    assert (cover == 0.0).any() and (cover == 1.0).any()  # clear and fully cloudy days exist


def test_cloudy_spells_and_cloudy_season():
    config = SimulationConfig(seed=5, cloud_persistence_days=6.0, cloudy_season=(300, 60))
    weather = daily_weather(config)
    cover = weather.cloud_cover
    # Persistence: consecutive days are strongly correlated.
    assert np.corrcoef(cover[:-1], cover[1:])[0, 1] > 0.6
    doy = np.array([d.timetuple().tm_yday for d in weather.dates])
    in_season = (doy >= 300) | (doy <= 60)
    assert cover[in_season].min() >= 0.95
    assert cover[~in_season].min() < 0.5


def test_cloud_field_covers_the_requested_fraction(year: Simulation):
    weather = year.weather
    partly_cloudy, with_shadow, with_core = 0, 0, 0
    for acquisition in year.acquisitions:
        cover = weather.cloud_cover[acquisition.day_index]
        clouds = year.clouds(acquisition)
        assert abs((clouds.opacity > 0).mean() - cover) < 0.01
        # Shadows never lie under opaque cloud (there the pixel is cloud).
        assert (clouds.shadow[clouds.opacity >= CLOUD_THICK_OPACITY] == 0).all()
        if 0.1 < cover < 0.9:
            partly_cloudy += 1
            # Thin edges always exist; opaque cores usually do.
            assert ((clouds.opacity > 0) & (clouds.opacity < CLOUD_THICK_OPACITY)).any()
            with_core += (clouds.opacity >= 0.99).any()
            with_shadow += clouds.shadow.max() > 0.5
    assert partly_cloudy > 10
    assert with_core > 0.7 * partly_cloudy
    # Shadows can fall outside a small region or onto other clouds, but usually show.
    assert with_shadow > 0.5 * partly_cloudy


# -- observations ----------------------------------------------------------------------------


def _block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    h, w = mask.shape
    return mask.reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))


def test_s2_scl_flags_exactly_the_clouds_and_clear_pixels_equal_truth(year: Simulation):
    acquisition = _first(
        year,
        lambda a: (
            a.sensor == "sentinel-2"
            and 0.2 < year.weather.cloud_cover[a.day_index] < 0.8
            and a.footprint.area > 0.99 * 1200 * 1200
        ),
    )
    item = year.item(acquisition)
    clouds = year.clouds(acquisition)
    scl = item.assets["scl"].data
    opaque = _block_any(clouds.opacity >= CLOUD_THICK_OPACITY, 2)
    np.testing.assert_array_equal(np.isin(scl, (8, 9)), opaque)
    clear_class = np.isin(scl, (4, 5, 6, 11))
    touched = _block_any((clouds.opacity > 0.02) | (clouds.shadow > 0.2), 2)
    assert clear_class.any() and not (clear_class & touched).any()
    # Opaque cloud cores are bright in the blue band.
    blue = item.assets["blue"].data.astype(float)
    offset = (
        S2_BOA_ADD_OFFSET_DN
        if not acquisition.boa_offset_applied and acquisition.processing_baseline >= "04.00"
        else 0
    )
    blue = (blue - offset) * S2_SCALE
    core = np.repeat(np.repeat(_block_any(clouds.opacity >= 0.99, 2), 2, 0), 2, 1)
    assert blue[core].mean() > 0.35
    # A clear 10 m pixel is the truth plus the sensor noise (the 10 m bands have MTF 1).
    clear_10m = np.repeat(np.repeat(clear_class, 2, 0), 2, 1)
    residual = blue[clear_10m] - year.truth(acquisition.day_index)[CHANNEL["S2_B2"]][clear_10m]
    assert abs(residual.mean()) < 1e-3 and 0.002 < residual.std() < 0.004


def test_landsat_qa_pixel_bits(year: Simulation):
    acquisition = _first(
        year,
        lambda a: a.sensor == "landsat" and 0.2 < year.weather.cloud_cover[a.day_index] < 0.8,
    )
    item = year.item(acquisition)
    clouds = year.clouds(acquisition)
    qa = item.assets["qa_pixel"].data.astype(np.int64)
    fill = (qa & 1).astype(bool)
    cloud_bit = ((qa >> 3) & 1).astype(bool)
    opaque = _block_any(clouds.opacity >= CLOUD_THICK_OPACITY, 3)
    rows, cols = year.window(acquisition, 30.0)
    np.testing.assert_array_equal(cloud_bit[~fill], opaque[rows, cols][~fill])
    clear_bit = ((qa >> 6) & 1).astype(bool)
    dilated = ((qa >> 1) & 1).astype(bool)
    assert not (clear_bit & (cloud_bit | dilated)).any()
    assert (clear_bit | cloud_bit | dilated | fill).all()
    high_confidence = ((qa >> 8) & 3) == 3
    np.testing.assert_array_equal(high_confidence[~fill], cloud_bit[~fill])
    assert (qa[fill] == 1).all()  # fill pixels carry only the fill bit


def test_landsat_temperature_decodes_to_plausible_kelvin(year: Simulation):
    acquisition = _first(
        year, lambda a: a.sensor == "landsat" and a.correction == "L2SP" and a.day_index > 150
    )
    item = year.item(acquisition)
    dn = item.assets["lwir11"].data.astype(float)
    qa = item.assets["qa_pixel"].data
    clear = (qa >> 6) & 1 == 1
    kelvin = dn[clear] * 0.00341802 + 149.0
    assert kelvin.min() > 270 and kelvin.max() < 335
    truth = year.truth(acquisition.day_index)[CHANNEL["LS_B10"]][1::3, 1::3]
    rows, cols = year.window(acquisition, 30.0)
    # The 100 m PSF smooths the 10 m truth: compare means, not pixels.
    assert abs(kelvin.mean() - truth[rows, cols][clear].mean()) < 1.5


def test_l2sr_items_have_no_thermal_band():
    simulation = Simulation(dataclasses.replace(SMALL, landsat_l2sr_fraction=1.0))
    acquisition = _first(simulation, lambda a: a.sensor == "landsat")
    assert acquisition.correction == "L2SR"
    assert "lwir11" not in simulation.item(acquisition).assets


def test_s2_boa_offset_rule_follows_baseline_and_flag():
    simulation = Simulation(dataclasses.replace(SMALL, s2_boa_offset_applied_fraction=0.5))
    seen = set()
    for acquisition in simulation.acquisitions:
        if acquisition.sensor != "sentinel-2" or acquisition.footprint.area < 0.99 * 600 * 600:
            continue
        item = simulation.item(acquisition)
        scl = item.assets["scl"].data
        clear = np.repeat(np.repeat(np.isin(scl, (4, 5, 6)), 2, 0), 2, 1)
        if clear.sum() < 100:
            continue
        dn = item.assets["red"].data[clear].astype(float)
        truth = simulation.truth(acquisition.day_index)[CHANNEL["S2_B4"]][clear]
        stored_offset = np.median(dn * S2_SCALE - truth) / S2_SCALE
        baseline4 = acquisition.processing_baseline >= "04.00"
        expected = S2_BOA_ADD_OFFSET_DN if baseline4 and not acquisition.boa_offset_applied else 0
        # Faint unflagged shadow edges bias a few pixels: far below the 1000 DN at stake.
        assert abs(stored_offset - expected) < 150, acquisition.item_id
        seen.add((baseline4, bool(acquisition.boa_offset_applied)))
    assert seen == {(False, False), (True, False), (True, True)}


def test_out_of_swath_and_fill_borders_exist(year: Simulation):
    partial_s2 = [
        a
        for a in year.acquisitions
        if a.sensor == "sentinel-2" and year.item(a).valid_fraction < 0.9
    ]
    partial_landsat = [
        a for a in year.acquisitions if a.sensor == "landsat" and year.item(a).valid_fraction < 0.9
    ]
    assert partial_s2 and partial_landsat
    item = year.item(partial_s2[0])
    out_of_swath = item.assets["scl"].data == 0
    assert out_of_swath.any() and not out_of_swath.all()
    # Every 20 m band has nodata exactly where SCL says no data; 10 m bands cover as much.
    np.testing.assert_array_equal(item.assets["rededge1"].data == 0, out_of_swath)
    assert abs((item.assets["red"].data == 0).mean() - out_of_swath.mean()) < 0.02
    landsat = year.item(partial_landsat[0])
    fill = landsat.assets["qa_pixel"].data == 1
    assert fill.any()
    np.testing.assert_array_equal(landsat.assets["red"].data == 0, fill)


def test_overlapping_tiles_and_scenes_of_one_pass_share_pixels():
    config = dataclasses.replace(
        SMALL,
        width_px=240,
        height_px=240,
        end=dt.date(2022, 2, 10),
        s2_tile_size_m=1500.0,
        s2_tile_step_m=1200.0,
        landsat_scene_size_m=(1800.0, 1900.0),
        landsat_row_step_m=1500.0,
        landsat_path_step_m=1400.0,
    )
    simulation = Simulation(config)
    by_day: dict[tuple, list] = {}
    for acquisition in simulation.acquisitions:
        by_day.setdefault((acquisition.swath_key,), []).append(acquisition)
    s2_groups = [g for g in by_day.values() if g[0].sensor == "sentinel-2" and len(g) > 1]
    landsat_groups = [g for g in by_day.values() if g[0].sensor == "landsat" and len(g) > 1]
    assert s2_groups and landsat_groups
    assert len({a.grid_code for a in simulation.acquisitions if a.sensor == "landsat"}) >= 3
    for group in (s2_groups[0], landsat_groups[0]):
        a, b = group[0], group[1]
        key = "red"
        item_a, item_b = simulation.item(a), simulation.item(b)
        resolution = item_a.assets[key].resolution
        overlap = a.footprint.intersection(b.footprint)
        assert overlap.area > 0
        ra, ca = simulation.window(a, resolution)
        rb, cb = simulation.window(b, resolution)
        region_a = np.zeros(simulation.grid.at(resolution).shape, dtype=np.int64)
        region_b = region_a.copy()
        region_a[ra, ca] = item_a.assets[key].data
        region_b[rb, cb] = item_b.assets[key].data
        both = (region_a > 0) & (region_b > 0)
        assert both.sum() > 10
        np.testing.assert_array_equal(region_a[both], region_b[both])


def test_observation_types(year: Simulation):
    s2 = _first(year, lambda a: a.sensor == "sentinel-2")
    landsat = _first(year, lambda a: a.sensor == "landsat")
    assert isinstance(year.observe(s2), S2Observation)
    assert isinstance(year.observe(landsat), LandsatObservation)
    assert band("S2_B8A").native_resolution == 20.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width_px": 100}, "multiple of 6"),
        ({"end": dt.date(2021, 1, 1)}, "before start"),
        ({"cloud_cover_mean": 1.5}, "fraction"),
        ({"center_lat": 86.0}, "UTM"),
        ({"truth_every_days": 0}, ">= 1"),
    ],
)
def test_bad_config_is_a_clear_error(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **changes)


def test_config_json_round_trip():
    config = dataclasses.replace(SMALL, cloudy_season=(300, 40))
    assert SimulationConfig.from_json(config.to_json()) == config
