"""All external I/O: catalog profiles and STAC search, datacube assembly, the Dask cluster,
Level-3 Zarr stores and their production (:mod:`pipelines.production`). Demo and test
infrastructure (simulated catalogs, local STAC servers) lives apart, in :mod:`pipelines.demo`."""
