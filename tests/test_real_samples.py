"""Real satellite samples decode to physically plausible values with the project's own code.

Reads ``../shared/data/real`` (each folder's README.txt describes it; skipped where absent):

- ``openeo-gfmap``: two real S2 L2A series (openEO/CDSE NetCDF) decode to reflectance with
  the right rule (the wrong, offset-in-DN rule gives negative vegetation reflectance), and
  ``s2_invalid`` reproduces the README's per-date clear fractions from the real SCL;
- ``worldcereal``: S2 monthly composites whose empty months (65535) decode to NaN; summer
  NDVI > winter NDVI;
- ``xlandsat``: USGS Landsat C2 L2SP cut-outs give SR reflectance (dark sea in NIR, dense
  forest NDVI) and ST Kelvin (fill -> NaN) with ``LOCAL.landsat_scaling``;
- ``xlandsat`` Brumadinho (EPSG:32623, negative northings) assembled by
  ``assemble_landsat`` on EPSG:32723: every pixel lands exactly 10,000,000 m further north.

Two regressions found on these samples are pinned: an L2SR scene (no thermal asset at all)
assembles with LS_B10 all NaN, and a fully cloudy date stays invalid to its border whatever
the morphology. deep-harmonization-l8 is covered by tests/test_masking.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from pipelines.catalogs import EARTH_SEARCH_V1, LOCAL, PLANETARY_COMPUTER, ScalingRule
from pipelines.datacube import CubeConfig, assemble_landsat
from pipelines.evaluation.data import read_openeo_uint16
from tamrf_xr.grid import RasterGrid
from tamrf_xr.masking import MaskConfig, s2_invalid

pytestmark = pytest.mark.realdata

# openEO delivers baseline >= 04.00 products (2023: 05.09) with the BOA offset already removed
# (README: clear red ~300-500 DN): exactly Earth Search's "boa_offset_applied" rule. A
# baseline-only rule (Planetary Computer) would subtract the 0.1 offset a second time.
S2_RIGHT = EARTH_SEARCH_V1.s2_scaling(
    {"collection": "sentinel-2-l2a",
     "properties": {"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True}}
)  # fmt: skip
S2_WRONG = PLANETARY_COMPUTER.s2_scaling({"properties": {"s2:processing_baseline": "05.09"}})
NO_MORPHOLOGY = MaskConfig(s2_opening_px=0, s2_closing_px=0, s2_dilation_px=0)
BRUMADINHO = "LC08_L2SP_218074_20190114_20200829_02_T1"
SR_KEYS = {"SR_B1": "coastal", "SR_B2": "blue", "SR_B3": "green", "SR_B4": "red",
           "SR_B5": "nir08", "SR_B6": "swir16", "SR_B7": "swir22"}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "clear_dates"),
    [
        ("test_optical_cube.nc", {1: 0.42, 4: 1.0, 17: 1.0}),  # README's clear fractions
        ("cdse_sentinel2_l2a.nc", {1: 0.99, 5: 0.99}),
    ],
)
def test_openeo_s2_decodes_to_reflectance_and_masks(
    real_data_dir: Path, name: str, clear_dates: dict[int, float]
) -> None:
    ds = read_openeo_uint16(real_data_dir / "openeo-gfmap" / name)
    scl = ds["S2-L2A-SCL"].values
    # The SCL classes alone give the README's clear fraction of every date.
    bare = s2_invalid(scl, NO_MORPHOLOGY)
    for t, fraction in enumerate((~bare).mean(axis=(1, 2))):
        assert fraction == pytest.approx(clear_dates.get(t, 0.0), abs=0.02), t
    invalid = s2_invalid(scl)  # the pipeline's masks: opening, closing, 25 px dilation
    assert invalid[np.isin(scl, [8, 9, 10])].all()
    cloudy = [t for t in range(len(scl)) if t not in clear_dates]
    assert invalid[cloudy].all(), "cloudy dates are entirely masked"
    # ~1 % of a clear date is flagged (shadows, dark areas); the 250 m dilation around those
    # spots covers a good part of these 0.6 km images, yet a clear date keeps most of it.
    assert max((~invalid[t]).mean() for t in clear_dates) > 0.5, "clear dates stay clear"

    clear = ~invalid & np.isin(scl, [4, 5, 6])
    bands = [v for v in ds.data_vars if v.split("-")[-1][1:].isdigit()]
    dn = np.concatenate([ds[v].values[clear] for v in bands])
    reflectance = S2_RIGHT.apply(dn)
    # uint16 DNs without offset cannot go negative; the darkest clear targets are ~1-2 %.
    assert np.isfinite(reflectance).all() and np.percentile(reflectance, 0.1) > 0.01
    # A few saturated specular pixels (a roof in cdse t=5, DN 16616) are clear in the SCL.
    assert (reflectance <= 1.0).mean() > 0.999 and reflectance.max() < 2.0
    assert (S2_WRONG.apply(dn) < 0).mean() > 0.3, "the offset rule makes dark pixels negative"

    vegetation = ~invalid & (scl == 4)
    red = S2_RIGHT.apply(ds["S2-L2A-B04"].values[vegetation])
    nir = S2_RIGHT.apply(ds["S2-L2A-B08"].values[vegetation])
    assert vegetation.sum() > 1000 and (nir > red).mean() > 0.99
    assert np.median((nir - red) / (nir + red)) > 0.3
    assert 0.02 < np.median(red) < 0.1 and 0.2 < np.median(nir) < 0.6
    assert (S2_WRONG.apply(ds["S2-L2A-B04"].values[vegetation]) < 0).mean() > 0.9


def test_worldcereal_empty_months_decode_to_nan(real_data_dir: Path) -> None:
    ds = read_openeo_uint16(real_data_dir / "worldcereal" / "worldcereal_preprocessed_inputs.nc")
    # WorldCereal composites mark "no cloud-free observation" with the uint16 maximum, not
    # with 0 like raw L2A (the project's S2 rules): a rule of its own, same scale, no offset.
    rule = ScalingRule(S2_RIGHT.scale, 0.0, 65535, "worldcereal-composite-nodata-65535")
    months = ds.t.dt.strftime("%Y-%m").values
    bands = [f"S2-L2A-B{b}" for b in ("02", "03", "04", "05", "06", "07", "08", "11", "12")]
    for band in bands:
        values = rule.apply(ds[band].values)
        empty = np.isnan(values).all(axis=(1, 2))
        assert list(months[empty]) == ["2020-12", "2021-01"], band
        assert np.isfinite(values[~empty]).all()
        assert (values[~empty] <= 1.0).mean() > 0.999 and values[~empty].min() >= 0.0
        # With raw L2A's nodata (0) the empty months would read as reflectance 6.55.
        assert np.nanmin(S2_RIGHT.apply(ds[band].values[empty])) > 6.5
    red = rule.apply(ds["S2-L2A-B04"].values)
    nir = rule.apply(ds["S2-L2A-B08"].values)
    assert 0.02 < np.nanmedian(red) < 0.2
    ndvi = (nir - red) / (nir + red)
    summer = np.nanmedian(ndvi[np.isin(months, ["2021-06", "2021-07"])])
    winter = np.nanmedian(ndvi[np.isin(months, ["2021-02", "2021-03"])])
    assert summer > winter + 0.15 and summer > 0.6


def read_landsat(path: Path) -> dict[str, np.ndarray]:
    """Decoded bands of an xlandsat GeoTIFF by project band name (``LS_B4``, ``LS_B10``)."""
    with rasterio.open(path) as src:
        names = [d.replace("SR_", "LS_").replace("ST_", "LS_") for d in src.descriptions]
        return {n: LOCAL.landsat_scaling(n).apply(src.read(i + 1)) for i, n in enumerate(names)}


def test_xlandsat_surface_reflectance_is_plausible(real_data_dir: Path) -> None:
    files = sorted((real_data_dir / "xlandsat" / "georef").glob("*_SR.tif"))
    assert len(files) == 6
    for path in files:
        for band, values in read_landsat(path).items():
            finite = values[np.isfinite(values)]
            assert finite.size > 0.99 * values.size, (path.name, band)
            # LaSRC gives slightly negative SR over water and shadow; a few % in the blue.
            assert ((finite >= -0.05) & (finite <= 1.0)).mean() > 0.98, (path.name, band)
            assert -0.01 < np.median(finite) < 0.5, (path.name, band)  # sea NIR ~0

    by_path_row = {p.name.split("_")[2]: p for p in files}
    liverpool = read_landsat(by_path_row["204023"])  # Liverpool Bay: mostly sea
    sea = liverpool["LS_B5"] < 0.03
    assert sea.mean() > 0.5 and abs(np.median(liverpool["LS_B5"][sea])) < 0.01
    assert (liverpool["LS_B3"][sea] > liverpool["LS_B5"][sea]).mean() > 0.95

    manaus = read_landsat(by_path_row["231062"])  # Landsat 9: rain forest around Manaus
    red, nir = manaus["LS_B4"], manaus["LS_B5"]
    forest = (nir - red) / (nir + red) > 0.6  # needs the -0.2 offset: without it NDVI < 0.4
    assert forest.mean() > 0.3
    assert 0.01 < np.median(red[forest]) < 0.06 and 0.2 < np.median(nir[forest]) < 0.5


def test_xlandsat_surface_temperature_is_kelvin(real_data_dir: Path) -> None:
    medians, fills = {}, {}
    for path in sorted((real_data_dir / "xlandsat" / "georef").glob("*_ST_B10.tif")):
        with rasterio.open(path) as src:
            fill = src.read(1) == 0
        kelvin = read_landsat(path)["LS_B10"]
        np.testing.assert_array_equal(np.isnan(kelvin), fill)  # ST fill 0 -> NaN
        assert ((kelvin[~fill] > 260) & (kelvin[~fill] < 340)).mean() > 0.98
        low, high = np.percentile(kelvin[~fill], [1, 99])
        assert low > 250 and high < 340
        path_row = path.name.split("_")[2]
        medians[path_row], fills[path_row] = float(np.median(kelvin[~fill])), int(fill.sum())
    assert sorted(medians) == ["017051", "204023"] and fills["017051"] > 0
    # Momotombo (Nicaragua, December) is warmer than Liverpool (UK, September).
    assert medians["017051"] > medians["204023"] + 8 and 280 < medians["204023"] < 295


def brumadinho_item(
    real_data_dir: Path, tmp_path: Path, fill_assets: tuple[str, ...]
) -> tuple[dict[str, Any], np.ndarray, rasterio.Affine]:
    """An Earth Search v1 style item of the Brumadinho cut-out, one GeoTIFF per asset.

    xlandsat ships no QA: an all-clear QA_PIXEL (bit 6) and an empty QA_RADSAT are written.
    ``fill_assets`` are written all fill (0): bands the cut-out lacks (B1, thermal...).
    """
    with rasterio.open(real_data_dir / "xlandsat" / "georef" / f"{BRUMADINHO}_SR.tif") as src:
        profile, data, tags = src.profile | {"count": 1}, src.read(), src.tags()
        keys = [SR_KEYS[d] for d in src.descriptions]
    arrays = dict(zip(keys, data, strict=True))
    arrays |= {"qa_pixel": np.full_like(data[0], 1 << 6), "qa_radsat": np.zeros_like(data[0])}
    arrays |= {key: np.zeros_like(data[0]) for key in fill_assets}
    assets = {}
    for key, array in arrays.items():
        with rasterio.open(tmp_path / f"{key}.tif", "w", **profile) as dst:
            dst.write(array, 1)
        assets[key] = {"href": str(tmp_path / f"{key}.tif"), "type": "image/tiff"}
    t = profile["transform"]
    lon, lat = Transformer.from_crs(32623, 4326, always_xy=True).transform(
        [t.c, t.c + 400 * t.a], [t.f + 300 * t.e, t.f]
    )
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": BRUMADINHO,
        "collection": "landsat-c2-l2", "bbox": [lon[0], lat[0], lon[1], lat[1]],
        "geometry": None, "assets": assets,
        "properties": {
            "datetime": f"{tags['DATE_ACQUIRED']}T{tags['SCENE_CENTER_TIME'][:8]}Z",
            "platform": "landsat-8", "proj:epsg": profile["crs"].to_epsg(),
            "proj:shape": [300, 400], "proj:transform": list(t)[:6],
            "landsat:correction": "L2SR",  # no ST_B10 in xlandsat for this scene
        },
    }  # fmt: skip
    return item, data[keys.index("red")], t


def test_brumadinho_negative_northings_move_to_the_southern_zone(
    real_data_dir: Path, tmp_path: Path
) -> None:
    item, red_dn, t = brumadinho_item(real_data_dir, tmp_path, ("coastal",))
    assert item["properties"]["proj:epsg"] == 32623 and t.f < 0
    west, north = t.c, t.f + 1e7  # the scene's corner in EPSG:32723 (UTM 23S)
    bounds = (  # interior, snapped to 60 m, >= 120 m in from the edges (halo: 60 m)
        np.ceil((west + 120) / 60) * 60, np.ceil((north + 300 * t.e + 120) / 60) * 60,
        np.floor((west + 400 * t.a - 120) / 60) * 60, np.floor((north - 120) / 60) * 60,
    )  # fmt: skip
    grid = RasterGrid(32723, tuple(float(b) for b in bounds), 10.0)
    # nearest: the bilinear kernel of GDAL's warped reads is not the textbook 2x2 one here.
    config = CubeConfig(min_valid_fraction=0, landsat_resampling="nearest")
    cube = assemble_landsat([item], grid, LOCAL, config).compute()
    assert cube.attrs["epsg"] == 32723 and cube.clear_fraction.values.tolist() == [1.0]
    assert np.isnan(cube.observations.sel(band=["LS_B1", "LS_B10"]).values).all()

    # USGS centres are on multiples of 30 m, the grid's on 15 m + 30 m: in x every output
    # centre is on a source edge (either neighbour is right); in y the 1e7 m shift puts it
    # 5 m from a source centre, so the source row is unambiguous.
    rows = np.floor((t.f - (cube.y.values - 1e7)) / 30).astype(int)
    cols = np.round((cube.x.values - t.c) / 30).astype(int)
    source = LOCAL.landsat_scaling("LS_B4").apply(red_dn)
    red = cube.observations.sel(band="LS_B4").values[0]
    assert np.isfinite(red).all()
    east, west_ = source[np.ix_(rows, cols)], source[np.ix_(rows, cols - 1)]
    assert ((red == east) | (red == west_)).all()
    assert (red == source[np.ix_(rows + 1, cols)]).mean() < 0.5, "the check sees a row"

    centre = ((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
    lon, lat = Transformer.from_crs(32723, 4326, always_xy=True).transform(*centre)
    assert lat == pytest.approx(-20.1, abs=0.1) and lon == pytest.approx(-44.2, abs=0.1)


def test_brumadinho_as_shipped_assembles_without_thermal(
    real_data_dir: Path, tmp_path: Path
) -> None:
    item, _, _ = brumadinho_item(real_data_dir, tmp_path, ("coastal",))
    grid = RasterGrid(32723, (586800.0, 7770000.0, 589800.0, 7773000.0), 10.0)
    cube = assemble_landsat([item], grid, LOCAL, CubeConfig(min_valid_fraction=0)).compute()
    assert np.isnan(cube.observations.sel(band="LS_B10").values).all()


def test_fully_cloudy_real_date_stays_invalid_without_dilation(real_data_dir: Path) -> None:
    scl = read_openeo_uint16(real_data_dir / "openeo-gfmap" / "test_optical_cube.nc")["S2-L2A-SCL"]
    assert (scl.values[2] == 8).all()  # README: t=2 is all cloud
    assert s2_invalid(scl.values[2], MaskConfig(s2_dilation_px=0)).all()


def test_bilinear_warping_gives_the_same_pixels_on_any_grid(
    real_data_dir: Path, tmp_path: Path
) -> None:
    """USGS grids sit 15 m off ours: bilinear weights must not depend on the grid's size
    (GDAL would otherwise estimate its kernel scale per request: seams between tiles)."""
    item, _, _ = brumadinho_item(real_data_dir, tmp_path, ("coastal",))
    config = CubeConfig(min_valid_fraction=0)  # bilinear
    large = RasterGrid(32723, (586800.0, 7770000.0, 589800.0, 7773000.0), 10.0)
    small = RasterGrid(32723, (587400.0, 7771200.0, 588600.0, 7772400.0), 10.0)
    whole = assemble_landsat([item], large, LOCAL, config).compute()
    part = assemble_landsat([item], small, LOCAL, config).compute()
    window = whole.sel(x=part.x, y=part.y).observations.values
    assert np.isfinite(part.observations.sel(band="LS_B4").values).all()
    np.testing.assert_array_equal(part.observations.values, window)
