"""The run's Dask cluster: local processes, an existing scheduler, and (marked gpu) dask-cuda."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from distributed import LocalCluster

from pipelines.cluster import ClusterConfig, gpu_count, start_cluster
from tamrf_xr.inference import ModelSource, untrained_checkpoint
from tamrf_xr.inference.model_cache import loads_in_this_process, resolve_device


def test_hidden_gpus_are_not_counted(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert gpu_count() == 0


def test_local_cluster_preloads_the_model_on_every_worker(tmp_path) -> None:
    source = ModelSource(str(untrained_checkpoint(tmp_path / "model")))
    config = ClusterConfig(n_workers=2, threads_per_worker=1, kind="cpu",
                           dashboard_address=None)  # fmt: skip
    # Other tests of this session may have loaded models in this process: count from here.
    loaded_here = loads_in_this_process()
    with start_cluster(config) as cluster:
        assert cluster.device == "cpu" and cluster.threads_per_worker == 1
        assert len(cluster.client.scheduler_info()["workers"]) == 2
        on_workers = cluster.model_source(source)
        assert on_workers.torch_threads == 1 and on_workers.checkpoint == source.checkpoint
        cluster.preload(on_workers)
        loads = cluster.client.run(loads_in_this_process)
    assert sorted(loads.values()) == [1, 1]
    assert loads_in_this_process() == loaded_here, "the client process never loads the model"


def _start_environment() -> dict[str, str]:
    raw = Path("/proc/self/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_workers_start_with_the_documented_environment_and_precision() -> None:
    """OpenMP/BLAS threads, OpenMP waits and malloc thresholds are set in every worker
    before it starts; ``auto`` precision is decided for this machine's CPU."""
    from pipelines.cluster import WORKER_ENV
    from tamrf_xr.precision import default_precision

    config = ClusterConfig(n_workers=1, threads_per_worker=2, kind="cpu", dashboard_address=None)
    with start_cluster(config) as cluster:
        # The environment the process STARTED with (glibc reads MALLOC_* at start, so a
        # variable set later in os.environ would have no effect).
        seen = cluster.client.run(_start_environment)
        assert [{k: env.get(k) for k in WORKER_ENV} for env in seen.values()] == [WORKER_ENV]
        assert cluster.precision == default_precision("cpu")
        assert cluster.model_source(ModelSource("m", precision="auto")).precision == (
            cluster.precision
        )
        assert cluster.model_source(ModelSource("m", precision="fp32")).precision == "fp32"


def test_an_existing_scheduler_is_used_and_left_running() -> None:
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as existing:  # fmt: skip
        with start_cluster(ClusterConfig(address=existing.scheduler_address)) as cluster:
            assert cluster.client.scheduler.address == existing.scheduler_address
            assert cluster.client.submit(sum, [1, 2]).result() == 3
            # The model's device is decided on each worker, not by this client.
            assert cluster.device == "auto"
            assert cluster.model_source(ModelSource("m")).device == "auto"
            on_workers = cluster.client.run(resolve_device, "auto")
            expected = "cuda" if torch.cuda.is_available() else "cpu"
            assert set(on_workers.values()) == {expected}
        assert existing.status.name == "running"


def test_a_local_cuda_cluster_without_gpus_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    with pytest.raises(ValueError, match="no GPU"), start_cluster(ClusterConfig(kind="cuda")):
        pass


@pytest.mark.gpu
def test_an_existing_gpu_cluster_runs_the_model_on_its_gpus() -> None:
    """A dask-cuda cluster given by address: the workers resolve ``auto`` to cuda."""
    from dask_cuda import LocalCUDACluster

    with (
        LocalCUDACluster(dashboard_address=None) as existing,
        start_cluster(ClusterConfig(address=existing.scheduler_address)) as cluster,
    ):
        assert set(cluster.client.run(resolve_device, "auto").values()) == {"cuda"}


@pytest.mark.gpu
def test_gpu_workers_predict_like_the_cpu(tmp_path) -> None:
    """On a GPU machine: one dask-cuda worker per GPU, the model on cuda, same predictions
    as the CPU to fp32 rounding."""
    import datetime as dt

    from pipelines.catalogs import LOCAL
    from pipelines.datacube import CubeConfig, assemble_landsat, assemble_s2
    from pipelines.demo.simulated_catalog import write_simulated_catalog
    from pipelines.demo.stac_servers import load_static_catalog
    from tamrf_xr.inference import InferenceConfig, predict
    from tamrf_xr.simulate import Simulation, SimulationConfig

    gpus = gpu_count()
    assert gpus > 0, "no GPU visible: run the gpu tests on a GPU machine"
    config = SimulationConfig(seed=2, width_px=120, height_px=120, start=dt.date(2022, 6, 1),
                              end=dt.date(2022, 6, 20))  # fmt: skip
    product = write_simulated_catalog(config, tmp_path / "p", with_truth=False)
    items = list(load_static_catalog(product.catalog).items)
    grid = Simulation(config).grid  # the region's 10 m grid
    keep = CubeConfig(min_valid_fraction=0.0)
    s2 = assemble_s2([i for i in items if i["collection"] == "sentinel-2-l2a"], grid, LOCAL, keep)
    landsat = assemble_landsat([i for i in items if i["collection"] == "landsat-c2-l2"], grid,
                               LOCAL, keep)  # fmt: skip
    source = ModelSource(str(untrained_checkpoint(tmp_path / "model")))
    inference = InferenceConfig(chunk_px=60, margin_px=30)
    on_cpu = predict(s2, landsat, ["2022-06-10"], source, inference).compute(scheduler="threads")
    with start_cluster(ClusterConfig(dashboard_address=None)) as cluster:
        assert cluster.device == "cuda"
        assert len(cluster.client.scheduler_info()["workers"]) == gpus
        on_gpu = predict(s2, landsat, ["2022-06-10"], cluster.model_source(source),
                         inference).compute()  # fmt: skip
    np.testing.assert_allclose(on_gpu["S2_B4"].values, on_cpu["S2_B4"].values, atol=1e-4)
