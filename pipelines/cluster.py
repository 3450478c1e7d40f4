"""The Dask cluster a run computes on: an existing one, GPU workers, local CPU workers, or
one a cluster spec describes.

- ``address`` given: connect to that scheduler (an HPC or Kubernetes deployment).
- a cluster spec (``kind`` names one of ``infra/clusters``, or ``spec`` gives a file; see
  :mod:`pipelines.cluster_specs`): start that cluster (local, dask-cuda, SLURM jobs,
  Kubernetes pods), wait for its first worker, and close it at the end.
- GPUs present (and dask-cuda installed): ``LocalCUDACluster``, one worker per GPU. GPUs are
  detected with ``nvidia-smi`` so that the client process never creates a CUDA context.
- otherwise a ``LocalCluster`` of worker processes.

Every worker loads the model once (:class:`PreloadModel`, a worker plugin, or lazily on first
use through :func:`tamrf_xr.inference.cached_model`): the task graph only carries the
checkpoint's path.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import dask
from distributed import Client, Worker, WorkerPlugin

from pipelines.cluster_specs import (
    ClusterSpec,
    default_local_workers,
    resolve_cluster_spec,
    wait_for_first_worker,
)
from tamrf_xr.inference import ModelSource, cached_model
from tamrf_xr.precision import default_precision

__all__ = [
    "WORKER_ENV",
    "ClusterConfig",
    "PreloadModel",
    "RunCluster",
    "gpu_count",
    "gpus_run_bf16",
    "start_cluster",
]


@dataclass(frozen=True)
class ClusterConfig:
    """Which cluster to use."""

    address: str | None = None
    """Scheduler address of an existing cluster (``tcp://host:8786``)."""
    n_workers: int | None = None
    """Local CPU workers (default: one per 2 cores, at least 1)."""
    threads_per_worker: int = 2
    memory_limit: str = "auto"
    kind: str = "auto"
    """``auto`` (local dask-cuda workers when GPUs are present, else CPU), ``cpu`` (local CPU
    workers even on a GPU machine), ``cuda`` (local GPU workers; an error without GPUs), or
    the name of a cluster spec in ``infra/clusters`` (``local``, ``slurm``, ``kubernetes``...).
    """
    dashboard_address: str | None = "127.0.0.1:0"
    """Local dashboard: a free port on the loopback interface by default (``:0`` would listen
    on every interface: servers this project starts bind 127.0.0.1 unless told otherwise);
    ``None``: no dashboard page (the scheduler's HTTP endpoint stays on its own address,
    127.0.0.1 for a local cluster)."""
    spec: str | None = None
    """A cluster spec file (or the name of one in ``infra/clusters``) to start; its kind
    decides, and ``kind`` is then ``auto`` or that kind. With a spec, ``n_workers`` overrides
    its worker count and its options replace ``threads_per_worker`` and ``memory_limit``."""

    def __post_init__(self) -> None:
        if self.n_workers is not None and self.n_workers < 1:
            raise ValueError(f"n_workers={self.n_workers}: at least one worker")
        self.cluster_spec()  # an unknown kind or an unusable spec fails here, not at start

    def cluster_spec(self) -> ClusterSpec | None:
        """The spec this config starts (None: the scheduler at ``address`` or a built-in
        ``auto``, ``cpu`` or ``cuda`` cluster).

        Raises:
            pipelines.cluster_specs.ClusterSpecError: an unknown kind or an unusable spec.
        """
        spec = resolve_cluster_spec(self.kind, self.spec, self.address)
        return None if spec is None else spec.with_workers(self.n_workers)

    @property
    def model_device(self) -> str:
        """Where the model runs as far as this process can tell: ``cpu`` or ``cuda`` for a
        local cluster of that kind, ``auto`` where each worker decides (``auto`` here, an
        existing scheduler, SLURM or Kubernetes workers)."""
        if self.address is not None:
            return "auto"
        spec = self.cluster_spec()
        if spec is None:
            return self.kind
        return {"local": "cpu", "cuda": "cuda"}.get(spec.kind, "auto")


WORKER_ENV = {
    "GOMP_SPINCOUNT": "10000",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MALLOC_MMAP_THRESHOLD_": str(256 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
}
"""Environment of local worker processes, set before they start (measured in
benchmarks/README.md, "Threads, processes and memory").

- A worker runs ``threads_per_worker`` task threads; one forward pass at a time uses them all
  as torch intra-op threads (``ModelSource.torch_threads`` and
  :data:`tamrf_xr.inference.model_cache.FORWARD_LOCK`), while the other task threads read and
  mask cubes with GDAL, NumPy and SciPy, single-threaded: 1 thread for OpenMP/BLAS outside
  torch, so nothing runs more threads than the worker has.
- torch's OpenMP threads spin briefly at their barriers, then sleep (``GOMP_SPINCOUNT``,
  libgomp's default spins about 30x longer): as fast as the default on a quiet worker, 15 %
  faster than never spinning (``OMP_WAIT_POLICY=PASSIVE``), and a spinning thread gives its
  core back soon to a thread that reads or masks.
- Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` fixes glibc's mmap threshold at 128 KiB, so
  every activation of the forward pass is a fresh mmap whose pages fault in one by one: the
  pass took 2.3x as long, half of it system time. Allocations below 256 MiB now come from the
  heap and are reused, and up to 256 MiB of free heap is kept per arena (bounded). These two
  must be set before the worker process starts (:func:`_worker_environment`): in a worker
  started with them only in ``Nanny(env=...)``, a forward pass took 1.8x as long, with 12 s
  of system time for 16 s of user time."""


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


def gpus_run_bf16() -> bool:
    """Whether every visible NVIDIA GPU executes bf16 natively (compute capability 8.0 and
    later), read from nvidia-smi without creating a CUDA context here."""
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
        capabilities = [float(line) for line in listing.split() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return False
    return bool(capabilities) and min(capabilities) >= 8.0


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
    precision: str = "auto"
    """What ``auto`` precision means on these workers: decided here for a local cluster
    (this machine's CPU or GPUs), ``auto`` on an existing cluster (each worker decides)."""

    def model_source(self, source: ModelSource) -> ModelSource:
        """``source`` with the device, thread count and precision of these workers."""
        precision = self.precision if source.precision == "auto" else source.precision
        return replace(source, device=self.device, torch_threads=self.threads_per_worker,
                       precision=precision)  # fmt: skip

    def preload(self, source: ModelSource) -> None:
        """Load the model on every worker now (and on workers that join later)."""
        self.client.register_plugin(PreloadModel(source))


@contextmanager
def _worker_environment() -> Iterator[None]:
    """:data:`WORKER_ENV` in the environment the nannies set BEFORE spawning their workers
    (glibc reads ``MALLOC_*`` at process start; a Nanny's ``env=`` is applied after it).

    Dask lets this process's own environment override that setting, and every Nanny copies
    its pre-spawn values into this process's environment: a cluster started earlier without
    them (Dask's ``MALLOC_TRIM_THRESHOLD_=65536``) would win. So the values are also set here
    while the cluster starts, and the previous ones put back after."""
    spawn = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    previous = {name: os.environ.get(name) for name in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn | WORKER_ENV}):
            yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _worker_threads(client: Client) -> int | None:
    """Task threads of the smallest worker the scheduler knows (None: no worker yet)."""
    workers = client.scheduler_info().get("workers", {}).values()
    return min((w.get("nthreads", 1) for w in workers), default=None)


def _builtin_spec(config: ClusterConfig) -> ClusterSpec:
    """The cluster of ``kind`` auto, cpu or cuda, as a spec: dask-cuda workers (one per GPU)
    when GPUs are present (auto) or asked for (cuda), else local CPU workers."""
    gpus = config.kind == "cuda" or (config.kind == "auto" and gpu_count() > 0)
    if gpus:
        # Two task threads per GPU: one prepares (reads, standardises, copies) the next block
        # while the other runs a forward pass (one at a time: FORWARD_LOCK).
        options = {"threads_per_worker": config.threads_per_worker,
                   "dashboard_address": config.dashboard_address}  # fmt: skip
        return ClusterSpec("cuda", "cuda", options)
    options = {"threads_per_worker": config.threads_per_worker, "processes": True,
               "memory_limit": config.memory_limit,
               "dashboard_address": config.dashboard_address}  # fmt: skip
    return ClusterSpec("cpu", "local", options, config.n_workers or default_local_workers())


def _require_cuda_workers() -> None:
    """GPUs here and dask-cuda installed, or the error that says what to do."""
    gpus = gpu_count()
    if not gpus:
        raise ValueError(
            "a local CUDA cluster was asked for but nvidia-smi lists no GPU here: use "
            "--cluster cpu (or auto), or --scheduler ADDRESS of a GPU cluster"
        )
    if importlib.util.find_spec("dask_cuda") is None:
        raise ImportError(
            f"{gpus} GPU(s) found but dask-cuda is not installed: "
            "pip install -c constraints.txt -e '.[gpu]' (or ClusterConfig(kind='cpu'))"
        )


@contextmanager
def start_cluster(config: ClusterConfig | None = None) -> Iterator[RunCluster]:
    """A cluster for the run: one this call starts (local, dask-cuda, or from a cluster spec:
    SLURM jobs, Kubernetes pods) is closed on exit; an existing one is left alone.

    Raises:
        ValueError: ``cuda`` workers asked for on a machine without GPUs.
        pipelines.cluster_specs.ClusterStartError: a spec's cluster that cannot start or
            gets no worker within its ``wait_for_workers_s``.
    """
    config = config or ClusterConfig()
    if config.address is not None:
        with Client(config.address) as client:
            # The workers decide: an existing GPU cluster runs the model on its GPUs even
            # when this client has none.
            yield RunCluster(client, "auto", _worker_threads(client))
        return
    spec = config.cluster_spec()
    if spec is not None and spec.kind in ("local", "cuda"):
        spec = replace(spec, options={"dashboard_address": config.dashboard_address,
                                      **spec.options})  # fmt: skip
    spec = spec or _builtin_spec(config)
    precision = "auto"  # SLURM and Kubernetes workers decide, as on an existing cluster
    if spec.kind == "cuda":
        _require_cuda_workers()
        precision = "bf16" if gpus_run_bf16() else "fp16"
    elif spec.kind == "local":
        precision = default_precision("cpu")
    # Local workers take WORKER_ENV from this process when they spawn; SLURM jobs and
    # Kubernetes pods get it in their job script or container environment.
    with _worker_environment():
        cluster = spec.create(remote_worker_env=WORKER_ENV)
    with cluster, Client(cluster) as client:
        spec.scale(cluster)
        wait_for_first_worker(client, spec)
        if spec.kind == "cuda":
            yield RunCluster(client, "cuda", None, precision)
        elif spec.kind == "local":
            threads = spec.options.get("threads_per_worker") or _worker_threads(client)
            yield RunCluster(client, "cpu", threads, precision)
        else:
            yield RunCluster(client, "auto", _worker_threads(client), precision)
