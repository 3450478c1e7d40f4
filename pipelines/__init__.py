"""All external I/O: STAC catalogs and servers, COG/Zarr writing, datacube assembly."""
