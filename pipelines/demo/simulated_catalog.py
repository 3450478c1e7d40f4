"""Write a simulated region as the real catalogs publish it: COGs + static STAC + truth Zarr.

Layout of the output directory::

    simulation.json                     the SimulationConfig (re-create everything from it)
    cogs/sentinel-2-l2a/<item>/B04.tif  one COG per band and date, Earth Search file names
    cogs/landsat-c2-l2/<item>/<product>_SR_B4.TIF ...
    stac/catalog.json                   self-contained static catalog, relative hrefs
    stac/<collection>/collection.json, stac/<collection>/<item>/<item>.json
    truth.zarr                          every band at 10 m on every day + land cover

Everything is written into a sibling temporary directory that is renamed into place at the end:
an interrupted run leaves no half-written product behind (the temporary directory is removed
on any failure, a full disk or Ctrl-C alike, and by the next run after a ``kill -9``), and an
existing product is only replaced when asked to.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pystac

from pipelines.demo.cog import write_cog
from pipelines.demo.simulated_stac import (
    LANDSAT_ASSET_FILES,
    S2_ASSET_FILES,
    collection,
    landsat_item,
    s2_item,
)
from pipelines.demo.truth_store import write_truth
from pipelines.output_errors import writing
from tamrf_xr.simulate import Acquisition, SimulatedItem, Simulation, SimulationConfig
from tamrf_xr.simulate.geometry import LANDSAT_COLLECTION, S2_COLLECTION

__all__ = ["SimulatedCatalog", "open_or_write_simulated_catalog", "write_simulated_catalog"]

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total); stages: ``items`` then ``truth``."""

_DESCRIPTIONS = {
    S2_COLLECTION: "Simulated Sentinel-2 L2A surface reflectance (Earth Search v1 form).",
    LANDSAT_COLLECTION: "Simulated Landsat-8/9 Collection 2 Level-2 (Earth Search v1 form).",
}


@dataclass(frozen=True)
class SimulatedCatalog:
    """Paths of a written simulated product."""

    root: Path
    catalog: Path
    """The static STAC catalog (``stac/catalog.json``)."""
    truth: Path | None
    """The truth Zarr store (None when the product was written without it)."""
    item_counts: dict[str, int]
    """Number of items per collection."""

    @classmethod
    def at(cls, root: Path) -> SimulatedCatalog:
        """Describe an existing product directory (raises if it is not one)."""
        root = Path(root)
        catalog = root / "stac" / "catalog.json"
        if not catalog.is_file():
            raise FileNotFoundError(
                f"{root} is not a simulated product (no stac/catalog.json): "
                "create one with `tamrf simulate OUT_DIR`"
            )
        counts = {}
        for child in pystac.Catalog.from_file(str(catalog)).get_children():
            counts[child.id] = sum(1 for _ in child.get_items())
        truth = root / "truth.zarr"
        return cls(root, catalog, truth if truth.exists() else None, counts)


def write_simulated_catalog(
    config: SimulationConfig,
    out_dir: Path,
    *,
    overwrite: bool = False,
    with_truth: bool = True,
    progress: Progress | None = None,
) -> SimulatedCatalog:
    """Simulate a region and write it (see the module docstring for the layout).

    Args:
        config: what to simulate.
        out_dir: product directory; must not exist (or be empty) unless ``overwrite``.
        overwrite: replace an existing product (only once the new one is complete).
        with_truth: also write ``truth.zarr`` (the largest part of the product).
        progress: optional progress callback.

    Raises:
        FileExistsError: ``out_dir`` holds something and ``overwrite`` is False.
        pipelines.output_errors.OutputWriteError: the disk is full or read-only (nothing is
            left behind).
    """
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} already exists and is not empty; choose another directory or pass "
            "overwrite=True (`--overwrite`) to replace it"
        )
    staging = out_dir.with_name(f".{out_dir.name}.incomplete")
    if staging.exists():
        shutil.rmtree(staging)  # left over by an interrupted run: never a finished product
    try:
        with writing("simulating the region", out_dir.parent):
            staging.mkdir(parents=True)
            counts = _write_product(config, staging, with_truth, progress)
            if out_dir.exists():
                shutil.rmtree(out_dir)
            staging.rename(out_dir)
    except BaseException:
        # Nothing reads a half-written product (the next run starts over): it would only
        # fill the disk.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SimulatedCatalog(
        root=out_dir,
        catalog=out_dir / "stac" / "catalog.json",
        truth=out_dir / "truth.zarr" if with_truth else None,
        item_counts=counts,
    )


def _write_product(
    config: SimulationConfig, staging: Path, with_truth: bool, progress: Progress | None
) -> dict[str, int]:
    """Write the whole product into ``staging``; return its item counts per collection."""
    simulation = Simulation(config)
    (staging / "simulation.json").write_text(config.to_json() + "\n")
    items: dict[str, list[pystac.Item]] = {S2_COLLECTION: [], LANDSAT_COLLECTION: []}
    total = len(simulation.acquisitions)
    for done, item in enumerate(simulation.items(), start=1):
        items[item.acquisition.collection].append(_write_item(item, staging, simulation.grid.epsg))
        if progress is not None:
            progress("items", done, total)

    catalog = pystac.Catalog(
        id="tamrf-simulated",
        description=(
            f"Region simulated by tamrf-xr (seed {config.seed}, {config.start} to {config.end})"
        ),
        title="tamrf-xr simulated catalog",
    )
    for collection_id, collection_items in items.items():
        if collection_items:
            catalog.add_child(
                collection(collection_id, collection_items, _DESCRIPTIONS[collection_id])
            )
    catalog.normalize_hrefs(str(staging / "stac"))
    # Earth Search v1 publishes STAC 1.0.0 documents; so do we (pystac defaults to 1.1.0).
    previous_version = pystac.get_stac_version()
    pystac.set_stac_version("1.0.0")
    try:
        catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    finally:
        pystac.set_stac_version(previous_version)

    if with_truth:
        write_truth(
            simulation,
            staging / "truth.zarr",
            progress=None if progress is None else lambda d, t: progress("truth", d, t),
        )
    return {k: len(v) for k, v in items.items()}


def open_or_write_simulated_catalog(
    config: SimulationConfig,
    out_dir: Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> SimulatedCatalog:
    """Reuse the product in ``out_dir`` if it was simulated from ``config``, else write it.

    Raises:
        FileExistsError: ``out_dir`` holds another product (or other files) and not
            ``overwrite``.
    """
    out_dir = Path(out_dir).absolute()
    recorded = out_dir / "simulation.json"
    if not overwrite and recorded.is_file():
        if SimulationConfig.from_json(recorded.read_text()) == config:
            return SimulatedCatalog.at(out_dir)
        raise FileExistsError(
            f"{out_dir} holds a product simulated with another configuration "
            f"({recorded}); choose another directory or pass `--overwrite` to replace it"
        )
    return write_simulated_catalog(config, out_dir, overwrite=overwrite, progress=progress)


def _write_item(item: SimulatedItem, staging: Path, region_epsg: int) -> pystac.Item:
    acq = item.acquisition
    relative_dir = Path("cogs") / acq.collection / acq.item_id
    (staging / relative_dir).mkdir(parents=True)
    hrefs = {}
    for key, raster in item.assets.items():
        if acq.collection == S2_COLLECTION:
            name = f"{S2_ASSET_FILES[key]}.tif"
        else:
            # USGS file names carry the processing date that the item id leaves out.
            product = acq.item_id.replace(
                f"_{acq.date:%Y%m%d}_", f"_{acq.date:%Y%m%d}_{_processed(acq):%Y%m%d}_"
            )
            name = f"{product}_{LANDSAT_ASSET_FILES[key]}.TIF"
        write_cog(
            staging / relative_dir / name, raster.data, raster.epsg, raster.transform, raster.nodata
        )
        # Relative to the item JSON (stac/<collection>/<id>/<id>.json): the product can move.
        hrefs[key] = (Path("../../..") / relative_dir / name).as_posix()
    build = s2_item if acq.collection == S2_COLLECTION else landsat_item
    return build(item, hrefs, region_epsg)


def _processed(acquisition: Acquisition) -> dt.date:
    return acquisition.date + dt.timedelta(days=9)
