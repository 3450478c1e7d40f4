"""Evaluation datasets from files: a pair of input cubes, or a real S2 L2A series (openEO).

- :func:`cube_pair_dataset`: two Zarr (or NetCDF) cubes in the conventions of
  :func:`tamrf_xr.inference.predict` (``observations`` (time, band, y, x), ``valid``
  (time, y, x); S2 at 10 m, Landsat at 30 m on the same bounds), e.g. cubes a user saved from
  ``pipelines.datacube``.
- :func:`openeo_s2_dataset`: an openEO/CDSE NetCDF of S2 L2A bands, with or without SCL (the
  real samples' format: uint16 DNs stored as int16 with ``_Unsigned``, BOA offset already
  removed), decoded with Earth Search's rule for such items and masked from the SCL by the
  production rules (without SCL, e.g. monthly composites, from the nodata values 0 and
  65535 alone); bands the file lacks stay NaN (the model reads them as missing), and there is
  no Landsat.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from pipelines.catalogs import EARTH_SEARCH_V1
from tamrf_xr.bands import LANDSAT_BANDS, S2_BANDS
from tamrf_xr.evaluation.dataset import EvaluationDataset, cube
from tamrf_xr.masking import MaskConfig, s2_invalid

__all__ = ["cube_pair_dataset", "openeo_s2_dataset", "read_openeo_uint16"]

# openEO delivers baseline >= 04.00 products with the BOA offset removed: Earth Search's
# "boa_offset_applied" items decode the same way (DN / 10000).
OPENEO_S2_SCALING = EARTH_SEARCH_V1.s2_scaling(
    {
        "collection": "sentinel-2-l2a",
        "properties": {"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True},
    }
)


def _open(path: Path) -> xr.Dataset:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give the path of a saved cube")
    if path.suffix == ".nc":
        return xr.open_dataset(path)
    return xr.open_zarr(path)


def cube_pair_dataset(s2_path: str | Path, landsat_path: str | Path) -> EvaluationDataset:
    """The two cubes, loaded into memory (observations are the references; no truth).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a cube without ``observations``/``valid`` or with other bands.
    """
    cubes = []
    for path, bands, sensor in (
        (Path(s2_path), S2_BANDS, "Sentinel-2"),
        (Path(landsat_path), LANDSAT_BANDS, "Landsat"),
    ):
        with _open(path) as opened:
            missing = {"observations", "valid"} - set(opened.data_vars)
            if missing:
                raise ValueError(
                    f"{path}: no {sorted(missing)} variable(s); a {sensor} cube "
                    "needs observations (time, band, y, x) and valid (time, y, x)"
                )
            names = [str(b) for b in opened["band"].values]
            if names != [b.name for b in bands]:
                raise ValueError(f"{path}: bands {names}, expected {[b.name for b in bands]}")
            cubes.append(opened[["observations", "valid"]].load())
    return EvaluationDataset(
        name=f"cubes-{Path(s2_path).stem}",
        s2=cubes[0],
        landsat=cubes[1],
        description=f"input cubes {s2_path} (Sentinel-2) and {landsat_path} (Landsat)",
    )


def read_openeo_uint16(path: str | Path) -> xr.Dataset:
    """The (t, y, x) variables of an openEO NetCDF as their uint16 DNs.

    openEO stores uint16 as int16 with ``_Unsigned = "true"``: ``mask_and_scale=False`` keeps
    xarray's decoding away and the int16 bits are reinterpreted (65535 is stored as -1).
    NetCDF-3 files go through scipy's reader, NetCDF-4 through h5netcdf.
    """
    path = Path(path)
    with path.open("rb") as f:
        engine = "h5netcdf" if f.read(4) == b"\x89HDF" else "scipy"
    with xr.open_dataset(path, engine=engine, mask_and_scale=False) as ds:
        out = {}
        for name, var in ds.data_vars.items():
            if var.ndim == 3:
                if var.dtype != np.int16 or var.attrs.get("_Unsigned") != "true":
                    raise ValueError(f"{path}: {name} is not openEO's unsigned int16 encoding")
                out[name] = (var.dims, var.values.view(np.uint16))
        coords = {k: ds[k].values for k in ("t", "y", "x") if k in ds.coords}
        epsg = ds["crs"].attrs.get("spatial_ref") if "crs" in ds else None
        result = xr.Dataset(out, coords=coords)
        if "crs" in ds:
            result.attrs["crs_wkt"] = epsg or ds["crs"].attrs.get("crs_wkt", "")
        return result


def _model_band(variable: str) -> str | None:
    """``S2-L2A-B02`` -> ``S2_B2``; None for bands the model does not take (B01, B09...)."""
    code = variable.rsplit("-", 1)[-1]
    if not code.startswith("B"):
        return None
    name = "S2_B" + (code[1:].lstrip("0") or "0")
    return name if name in [b.name for b in S2_BANDS] else None


def openeo_s2_dataset(path: str | Path, masks: MaskConfig | None = None) -> EvaluationDataset:
    """A real S2 L2A series (openEO NetCDF with SCL) as an S2-only dataset.

    The grid is cropped to whole 30 m pixels (multiples of 3 px) from its top-left corner.
    """
    path = Path(path)
    raw = read_openeo_uint16(path)
    scl_name = next((v for v in raw.data_vars if v.endswith("SCL")), None)
    ny, nx = (raw.sizes["y"] // 3) * 3, (raw.sizes["x"] // 3) * 3
    raw = raw.isel(y=slice(0, ny), x=slice(0, nx))
    bands = {_model_band(v): v for v in raw.data_vars if _model_band(v)}
    if not bands:
        raise ValueError(f"{path}: no Sentinel-2 band variable (S2-L2A-B02 ...)")
    values = np.full((raw.sizes["t"], len(S2_BANDS), ny, nx), np.nan, np.float32)
    nodata = np.zeros((raw.sizes["t"], ny, nx), bool)
    for k, band in enumerate(S2_BANDS):
        if band.name in bands:
            dn = raw[bands[band.name]].values
            # 0 and 65535 mark pixels without data (composites: no cloud-free observation).
            nodata |= (dn == 0) | (dn == 65535)
            values[:, k] = OPENEO_S2_SCALING.apply(dn)
    values[np.broadcast_to(nodata[:, None], values.shape)] = np.nan
    if scl_name is not None:
        valid = ~s2_invalid(raw[scl_name].values, masks or MaskConfig()) & ~nodata
        masking = "masked from its SCL"
    else:  # composites: every pixel with data is clear
        valid = ~nodata
        masking = "no SCL: every pixel with data counts as clear"
    x, y = raw["x"].values, raw["y"].values
    bounds = (float(x[0]) - 5.0, float(y[-1]) - 5.0, float(x[-1]) + 5.0, float(y[0]) + 5.0)
    times = list(raw["t"].values.astype("datetime64[D]"))
    s2 = cube(
        "sentinel-2",
        times,
        list(values),
        list(valid),
        [b.name for b in S2_BANDS],
        10.0,
        bounds,
        None,
    )
    landsat = cube("landsat", [], [], [], [b.name for b in LANDSAT_BANDS], 30.0, bounds, None)
    return EvaluationDataset(
        name=f"real-{path.stem}",
        s2=s2,
        landsat=landsat,
        description=(
            f"real Sentinel-2 L2A series {path.name}: {len(times)} dates, {ny} x {nx} px, "
            f"bands {', '.join(sorted(bands, key=[b.name for b in S2_BANDS].index))} "
            f"(the others missing), {masking}, no Landsat"
        ),
    )
