"""A reader that opens a Level-3 store while another process writes it sees only complete
tiles through ``open_level3`` (``complete_only``, the default), and a tile's data as soon as
its completion record exists; a plain ``xr.open_zarr`` sees a tile in the middle of its write.

The writer is a real separate process that writes tiles one by one with ``write_tile``,
stopping between a tile's chunks and its record until the reader lets it go on (a file
handshake, so that the reader's checks fall inside the window whatever the machine's load).
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pipelines.georef import grid_coords
from pipelines.grid import GridSpec, GridTile
from pipelines.level3 import (
    QUALITY_VARIABLES,
    completed_tiles,
    create_store,
    open_level3,
    read_definition,
)
from pipelines.storage import Location
from tamrf_xr.bands import BANDS

EPSG = 32631
SPEC = GridSpec(tile_size_m=300.0)  # 30 x 30 px
TILES = [GridTile(EPSG, column, row, SPEC) for row in (16060, 16059) for column in (1240, 1241)]
TIMES = pd.date_range("2024-03-01", periods=2, freq="10D")
WAIT_S = 60.0


def red(index: int) -> float:
    """Tile ``index``'s S2_B4 everywhere: exact in float32 with 12 mantissa bits."""
    return 0.125 * (index + 1)


def tile_dataset(tile: GridTile, index: int) -> xr.Dataset:
    """The tile with one value per variable: bands (time, y, x) ``red(index)`` (300 K for
    temperature), quality layers ``index + 1``."""
    px = SPEC.tile_px
    ds = xr.Dataset(coords=grid_coords(tile.grid())).assign_coords(time=("time", TIMES))
    for band in BANDS:
        value = 300.0 if band.quantity == "temperature" else red(index)
        ds[band.name] = (("time", "y", "x"), np.full((len(TIMES), px, px), value, np.float32))
    for name, dims in QUALITY_VARIABLES.items():
        shape = (len(TIMES), px, px) if dims[0] == "time" else (px, px)
        ds[name] = (dims, np.full(shape, index + 1, np.int16))
    ds.attrs["epsg"] = EPSG
    return ds


def _write_with_handshake(store: Path, signals: Path) -> None:
    """In the writer process: every tile in turn, each record written only once the reader
    has answered ``<tile>.go`` to ``<tile>.chunks`` (the chunks are written and flushed)."""
    import pipelines.level3 as level3

    write_record = level3._write_record

    def after_the_reader(
        path: Location, tile: GridTile, provenance: dict, zarr_format: int
    ) -> Location:
        (signals / f"{tile.tile_id}.chunks").touch()
        wait_for(signals / f"{tile.tile_id}.go")
        return write_record(path, tile, provenance, zarr_format)

    level3._write_record = after_the_reader  # this process only: the test's is untouched
    for index, tile in enumerate(TILES):
        level3.write_tile(store, tile, tile_dataset(tile, index))


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {WAIT_S} s")
        time.sleep(0.01)


def spatial_region(store: Path, tile: GridTile) -> dict[str, slice]:
    """The tile's (y, x) index ranges in the store."""
    region = read_definition(store).region(tile)
    return {"y": region["y"], "x": region["x"]}


def tiles_with_data(ds: xr.Dataset, store: Path) -> set[str]:
    """Ids of the tiles where S2_B4 or s2_clear_count has a value in ``ds``."""
    found = set()
    for tile in TILES:
        part = ds[["S2_B4", "s2_clear_count"]].isel(spatial_region(store, tile))
        if any(np.isfinite(part[name].values).any() for name in part.data_vars):
            found.add(tile.tile_id)
    return found


def check_complete_only(store: Path) -> set[str]:
    """Open the store with ``complete_only=True`` and check it against the records listed
    before and after the open (records only appear, so the open saw a set between them):
    every tile with data has a record, and every tile recorded before the open reads whole.
    Returns the tiles seen with data."""
    before = completed_tiles(store)
    ds = open_level3(store, complete_only=True)
    seen = tiles_with_data(ds, store)
    after = completed_tiles(store)
    assert seen <= after, f"tiles read with data but without a record: {sorted(seen - after)}"
    for index, tile in enumerate(TILES):
        values = ds.isel(spatial_region(store, tile))
        if tile.tile_id in before:
            assert (values["S2_B4"].values == red(index)).all(), tile.tile_id
            assert (values["s2_clear_count"].values == index + 1).all(), tile.tile_id
        elif tile.tile_id not in after:
            for name in values.data_vars:  # masked as if nothing were written
                assert np.isnan(values[name].values).all(), (tile.tile_id, name)
    return seen


def test_a_reader_sees_only_complete_tiles_while_a_process_writes(tmp_path: Path) -> None:
    store = create_store(tmp_path / "l3.zarr", TILES, TIMES)
    signals = tmp_path / "signals"
    signals.mkdir()
    writer = multiprocessing.get_context("spawn").Process(
        target=_write_with_handshake, args=(store, signals)
    )
    writer.start()
    try:
        for index, tile in enumerate(TILES):
            chunks = signals / f"{tile.tile_id}.chunks"
            while not chunks.exists():  # the writer is computing or writing the chunks
                check_complete_only(store)
                assert writer.is_alive() or chunks.exists(), f"writer exited {writer.exitcode}"
                time.sleep(0.02)
            # Chunks written, record held back: a plain reader sees the partial tile...
            plain = xr.open_zarr(store)
            assert tile.tile_id in tiles_with_data(plain, store)
            assert tile.tile_id not in completed_tiles(store)
            # ...and open_level3 does not (nor with its default), the earlier tiles whole.
            assert check_complete_only(store) == {t.tile_id for t in TILES[:index]}
            assert tiles_with_data(open_level3(store), store) == {t.tile_id for t in TILES[:index]}
            (signals / f"{tile.tile_id}.go").touch()
            while tile.tile_id not in completed_tiles(store):
                check_complete_only(store)
                time.sleep(0.02)
            # The record exists: the next open sees the tile, with its values.
            assert tile.tile_id in check_complete_only(store)
        writer.join(timeout=WAIT_S)
        assert writer.exitcode == 0
    finally:
        if writer.is_alive():
            writer.kill()
    assert check_complete_only(store) == {t.tile_id for t in TILES}
