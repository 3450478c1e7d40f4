"""The Dask cluster a run computes on: an existing one, GPU workers, or local CPU workers.

- ``address`` given: connect to that scheduler (an HPC or Kubernetes deployment).
- GPUs present (and dask-cuda installed): ``LocalCUDACluster``, one worker per GPU. GPUs are
  detected with ``nvidia-smi`` so that the client process never creates a CUDA context.
- otherwise a ``LocalCluster`` of worker processes.

Every worker loads the model once (:class:`PreloadModel`, a worker plugin, or lazily on first
use through :func:`tamrf_xr.inference.cached_model`): the task graph only carries the
checkpoint's path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal

from distributed import Client, LocalCluster, Worker, WorkerPlugin

from tamrf_xr.inference import ModelSource, cached_model

__all__ = ["ClusterConfig", "PreloadModel", "RunCluster", "gpu_count", "start_cluster"]


@dataclass(frozen=True)
class ClusterConfig:
    """Which cluster to use."""

    address: str | None = None
    """Scheduler address of an existing cluster (``tcp://host:8786``)."""
    n_workers: int | None = None
    """Local CPU workers (default: one per 2 cores, at least 1)."""
    threads_per_worker: int = 2
    memory_limit: str = "auto"
    kind: Literal["auto", "cpu", "cuda"] = "auto"
    """Local cluster only: ``auto`` (dask-cuda workers when GPUs are present, else CPU),
    ``cpu`` (CPU workers even on a GPU machine) or ``cuda`` (GPU workers; an error without
    GPUs)."""
    dashboard_address: str | None = ":0"
    """Local dashboard (``None`` disables it); ``:0`` picks a free port."""

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "cpu", "cuda"):
            raise ValueError(f"cluster kind {self.kind!r}: use auto, cpu or cuda")
        if self.n_workers is not None and self.n_workers < 1:
            raise ValueError(f"n_workers={self.n_workers}: at least one worker")


def gpu_count() -> int:
    """NVIDIA GPUs visible to this process, without initialising CUDA here."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    count = sum(1 for line in listing.splitlines() if line.startswith("GPU "))
    if visible is not None:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count


class PreloadModel(WorkerPlugin):
    """Load the model when a worker starts (and on every worker that joins later)."""

    name = "tamrf-preload-model"

    def __init__(self, source: ModelSource) -> None:
        self.source = source

    def setup(self, worker: Worker) -> None:
        cached_model(self.source)


@dataclass(frozen=True)
class RunCluster:
    """A connected client and what its workers run the model on."""

    client: Client
    device: str
    """``cuda`` on dask-cuda workers (each sees its own GPU as device 0), ``cpu`` on local CPU
    workers, ``auto`` on an existing cluster (each worker uses its GPU when it has one)."""
    threads_per_worker: int | None

    def model_source(self, source: ModelSource) -> ModelSource:
        """``source`` with the device and thread count of these workers."""
        return replace(source, device=self.device, torch_threads=self.threads_per_worker)

    def preload(self, source: ModelSource) -> None:
        """Load the model on every worker now (and on workers that join later)."""
        self.client.register_plugin(PreloadModel(source))


@contextmanager
def start_cluster(config: ClusterConfig | None = None) -> Iterator[RunCluster]:
    """A cluster for the run; a local one is closed on exit, an existing one is left alone."""
    config = config or ClusterConfig()
    if config.address is not None:
        with Client(config.address) as client:
            workers = client.scheduler_info().get("workers", {}).values()
            threads = min((w.get("nthreads", 1) for w in workers), default=None)
            # The workers decide: an existing GPU cluster runs the model on its GPUs even
            # when this client has none.
            yield RunCluster(client, "auto", threads)
        return
    gpus = gpu_count() if config.kind != "cpu" else 0
    if config.kind == "cuda" and not gpus:
        raise ValueError(
            "a local CUDA cluster was asked for but nvidia-smi lists no GPU here: use "
            "--cluster cpu (or auto), or --scheduler ADDRESS of a GPU cluster"
        )
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ImportError(
                f"{gpus} GPU(s) found but dask-cuda is not installed: "
                "pip install -c constraints.txt -e '.[gpu]' (or ClusterConfig(kind='cpu'))"
            ) from None
        cluster = LocalCUDACluster(dashboard_address=config.dashboard_address)
        device, threads = "cuda", None
    else:
        workers = config.n_workers or max(1, (os.cpu_count() or 2) // 2)
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=config.threads_per_worker,
            processes=True,
            memory_limit=config.memory_limit,
            dashboard_address=config.dashboard_address,
        )
        device, threads = "cpu", config.threads_per_worker
    with cluster, Client(cluster) as client:
        yield RunCluster(client, device, threads)
