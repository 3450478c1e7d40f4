"""Cluster specs: the Dask cluster a run starts, as a YAML file (``infra/clusters/*.yaml``).

A spec has a ``kind`` and the keyword arguments of that kind's cluster class (``options``):

- ``local``: :class:`distributed.LocalCluster`, CPU worker processes on this machine;
- ``cuda``: ``dask_cuda.LocalCUDACluster``, one worker per GPU of this machine (``gpu`` extra);
- ``slurm``: ``dask_jobqueue.SLURMCluster``, workers as batch jobs (``slurm`` extra);
- ``kubernetes``: a ``DaskCluster`` manifest of the Dask operator, started with
  ``dask_kubernetes.operator.KubeCluster`` (``kubernetes`` extra). The file is the manifest
  itself, so ``kubectl apply -f`` takes it too.

plus ``workers`` (or ``adapt: {minimum, maximum}``) and ``wait_for_workers_s``. ``tamrf run
--cluster NAME`` takes a spec of ``infra/clusters`` by name, ``--cluster-spec FILE`` one from
anywhere. Specs are checked when loaded (unknown keys and options, wrong kinds), so a mistake
is reported before a run does anything.

This module loads no cluster library until a spec needs it: the command line checks
``--cluster`` before anything heavy is imported.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
import shlex
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "BUILTIN_KINDS",
    "SPEC_KINDS",
    "Adapt",
    "ClusterSpec",
    "ClusterSpecError",
    "ClusterStartError",
    "default_local_workers",
    "kubernetes_manifest",
    "load_spec",
    "resolve_cluster_spec",
    "slurm_options",
    "spec_dir",
    "spec_names",
    "wait_for_first_worker",
]

BUILTIN_KINDS = ("auto", "cpu", "cuda")
"""``--cluster`` values that need no spec (:class:`pipelines.cluster.ClusterConfig`)."""
SPEC_KINDS = ("local", "cuda", "slurm", "kubernetes")
"""What a spec can start."""
_SAME_KIND = {"cpu": "local"}
"""``--cluster cpu`` with a ``local`` spec file names the same thing."""
_SPEC_KEYS = ("name", "kind", "workers", "adapt", "wait_for_workers_s", "options")
_MANIFEST_API = "kubernetes.dask.org/v1"
_WAIT_ANNOTATION = "tamrf-xr/wait-for-workers-s"
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_KUBE_NAME_MAX = 44
"""The operator names the scheduler service ``<name>-scheduler`` (a DNS label: at most 63
characters), and each run appends ``-<8 hex digits>`` to the manifest's name."""
_NOT_OPTIONS = {"self", "loop", "asynchronous", "scheduler", "job_cls"}
"""Parameters of the cluster classes that a YAML file cannot or must not set."""
_INSTALL = "pip install -c constraints.txt -e '.[{extra}]'"


class ClusterSpecError(ValueError):
    """A cluster spec that cannot be used: missing, unreadable, or with a wrong key or value."""


class ClusterStartError(RuntimeError):
    """A cluster that did not start, or got no worker in time."""


@dataclass(frozen=True)
class Adapt:
    """Adaptive scaling bounds, in workers."""

    minimum: int
    maximum: int


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster to start: its kind, its class's keyword arguments and its size."""

    name: str
    kind: str
    """One of :data:`SPEC_KINDS`."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of the kind's cluster class; for ``kubernetes``, the manifest."""
    workers: int | None = None
    """Workers to start (``local``: default one per 2 cores; ``cuda``: one per GPU)."""
    adapt: Adapt | None = None
    """Adaptive scaling instead of a fixed count (``local``, ``slurm``)."""
    wait_for_workers_s: float = 600.0
    """How long the run waits for its first worker before it gives up."""
    source: str = "built-in"
    """The file the spec comes from, for messages."""

    def with_workers(self, workers: int | None) -> ClusterSpec:
        """This spec with a fixed worker count (``--workers``), when one is given."""
        return self if workers is None else replace(self, workers=workers, adapt=None)

    def create(self, remote_worker_env: Mapping[str, str] | None = None) -> Any:
        """The started cluster object. SLURM: its scheduler runs here and no job is submitted
        yet (:meth:`scale` does); Kubernetes: the operator creates the pods.

        ``remote_worker_env`` is exported in each SLURM job script and set in each Kubernetes
        worker container (variables a worker must start with); local workers inherit this
        process's pre-spawn environment instead (:func:`pipelines.cluster.start_cluster`)."""
        env = dict(remote_worker_env or {})
        if self.kind == "local":
            from distributed import LocalCluster

            first = self.adapt.minimum if self.adapt else self.workers or default_local_workers()
            return LocalCluster(n_workers=first, **self.options)
        if self.kind == "cuda":
            from dask_cuda import LocalCUDACluster

            sized = {} if self.workers is None else {"n_workers": self.workers}
            return LocalCUDACluster(**self.options, **sized)
        if self.kind == "slurm":
            return _create_slurm(self, env)
        return _create_kubernetes(self, env)

    def scale(self, cluster: Any) -> None:
        """Ask ``cluster`` for this spec's workers (SLURM: submits the jobs)."""
        if self.adapt is not None:
            cluster.adapt(minimum=self.adapt.minimum, maximum=self.adapt.maximum)
        elif self.kind == "slurm" and self.workers:
            cluster.scale(self.workers)


def default_local_workers() -> int:
    """Local CPU workers by default: one per 2 cores (at least 1)."""
    return max(1, (os.cpu_count() or 2) // 2)


def spec_dir() -> Path:
    """``infra/clusters`` of the repository this package runs from (an editable install or a
    clone); it is not package data, so a non-editable install has none."""
    return Path(__file__).resolve().parents[1] / "infra" / "clusters"


def spec_names() -> list[str]:
    """The names of the specs in :func:`spec_dir` (empty when it is absent)."""
    folder = spec_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve_cluster_spec(kind: str, spec: str | None, address: str | None) -> ClusterSpec | None:
    """The spec that ``--cluster KIND``, ``--cluster-spec SPEC`` and ``--scheduler ADDRESS``
    ask for (None: a built-in local cluster or the scheduler at ``address``).

    Raises:
        ClusterSpecError: an unknown ``kind``, a spec that cannot be used, a spec whose kind
            is not ``kind``, or a spec together with ``address``.
    """
    if spec is None and kind in BUILTIN_KINDS:
        return None
    if address is not None:
        asked = f"--cluster-spec {spec}" if spec is not None else f"--cluster {kind}"
        raise ClusterSpecError(
            f"--scheduler {address} connects to a running cluster and {asked} starts one: "
            "give only one of them"
        )
    if spec is None:
        return _spec_by_name(kind)
    loaded = load_spec(spec)
    if kind not in ("auto", loaded.kind, loaded.name) and _SAME_KIND.get(kind) != loaded.kind:
        raise ClusterSpecError(
            f"--cluster {kind} but the spec {loaded.source} starts a {loaded.kind} cluster: "
            f"leave out --cluster, or give --cluster {loaded.kind}"
        )
    return loaded


def load_spec(spec: str | os.PathLike[str]) -> ClusterSpec:
    """A checked spec from a YAML file, or by name from :func:`spec_dir`.

    Raises:
        ClusterSpecError: no such file or name, not YAML, or a wrong key or value.
    """
    path = Path(spec)
    if path.is_file():
        return _load_file(path)
    text = str(spec)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", text):
        return _spec_by_name(text)
    raise ClusterSpecError(
        f"cluster spec file {text} does not exist: give an existing YAML file, or the name of "
        f"a spec in {spec_dir()} ({', '.join(spec_names()) or 'none here'})"
    )


def _spec_by_name(name: str) -> ClusterSpec:
    folder = spec_dir()
    path = folder / f"{name}.yaml"
    if path.is_file():
        return _load_file(path)
    if not folder.is_dir():
        raise ClusterSpecError(
            f"cluster {name!r} is not auto, cpu or cuda, and no spec folder is installed here "
            f"({folder} is absent outside an editable install of the repository): give a spec "
            "file with --cluster-spec FILE (a copy of one in the repository's infra/clusters)"
        )
    names = spec_names()
    close = difflib.get_close_matches(name, [*BUILTIN_KINDS, *names], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ClusterSpecError(
        f"cluster {name!r} is neither auto, cpu, cuda nor a spec in {folder} "
        f"({', '.join(names)}): {hint}give one of these, or a spec file with --cluster-spec FILE"
    )


def _load_file(path: Path) -> ClusterSpec:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ClusterSpecError(
            f"cluster spec {path} cannot be read ({error.strerror}): give a readable YAML file"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ClusterSpecError(
            f"cluster spec {path} is not valid YAML{where} ({problem}): fix the file "
            "(the specs in infra/clusters are examples)"
        ) from None
    if not isinstance(data, dict):
        raise ClusterSpecError(
            f"cluster spec {path} is not a mapping of keys: start from a spec of infra/clusters"
        )
    if "apiVersion" in data or data.get("kind") == "DaskCluster":
        return _kubernetes_spec(path, data)
    return _spec_from_mapping(path, data)


def _spec_from_mapping(path: Path, data: dict[str, Any]) -> ClusterSpec:
    _no_unknown_keys(data, _SPEC_KEYS, f"cluster spec {path}", "the keys of a spec")
    kind = data.get("kind")
    if kind not in ("local", "cuda", "slurm"):
        raise ClusterSpecError(
            f"cluster spec {path}: kind {kind!r} is not local, cuda or slurm: give one of "
            "these (a Kubernetes spec is a DaskCluster manifest, apiVersion "
            f"{_MANIFEST_API})"
        )
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise ClusterSpecError(
            f"cluster spec {path}: options is not a mapping: give the cluster's keyword "
            "arguments as key: value lines"
        )
    _check_options(path, kind, options)
    workers = _count(path, "workers", data.get("workers"), minimum=1)
    adapt = _adapt(path, kind, data.get("adapt"))
    if workers is not None and adapt is not None:
        raise ClusterSpecError(
            f"cluster spec {path}: both workers and adapt are given: keep one (a fixed count, "
            "or adaptive bounds)"
        )
    wait = _seconds(path, "wait_for_workers_s", data.get("wait_for_workers_s", 600.0))
    name = str(data.get("name") or path.stem)
    return ClusterSpec(name, kind, options, workers, adapt, wait, str(path))


def _no_unknown_keys(data: Mapping[str, Any], known: tuple[str, ...], what: str, of: str) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ClusterSpecError(
                f"{what}: unknown key {key!r}: {hint}{of} are {', '.join(known)}"
            )


def _count(path: Path, key: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ClusterSpecError(
            f"cluster spec {path}: {key} {value!r} is not a whole number >= {minimum}: fix it"
        )
    return value


def _seconds(path: Path, key: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not seconds > 0:
        raise ClusterSpecError(
            f"cluster spec {path}: {key} {value!r} is not a number of seconds > 0: fix it"
        )
    return seconds


def _adapt(path: Path, kind: str, value: Any) -> Adapt | None:
    if value is None:
        return None
    if kind not in ("local", "slurm"):
        raise ClusterSpecError(
            f"cluster spec {path}: adapt is for local and slurm clusters (a {kind} cluster has "
            "one worker per GPU): remove it, or give workers"
        )
    if not isinstance(value, dict):
        raise ClusterSpecError(
            f"cluster spec {path}: adapt is not a mapping: give adapt: {{minimum: 1, maximum: 8}}"
        )
    _no_unknown_keys(value, ("minimum", "maximum"), f"cluster spec {path}: adapt", "its keys")
    minimum = _count(path, "adapt.minimum", value.get("minimum", 1), minimum=1)
    maximum = _count(path, "adapt.maximum", value.get("maximum"), minimum=1)
    if minimum is None or maximum is None or maximum < minimum:
        raise ClusterSpecError(
            f"cluster spec {path}: adapt {value!r} needs 1 <= minimum <= maximum: fix it"
        )
    return Adapt(minimum, maximum)


def _check_options(path: Path, kind: str, options: Mapping[str, Any]) -> None:
    """Every option is a keyword argument of the kind's cluster class (read from the installed
    library, so a misspelt option is caught here rather than deep inside a job)."""
    if "n_workers" in options:
        raise ClusterSpecError(
            f"cluster spec {path}: option 'n_workers': give the worker count as workers: N at "
            "the top level of the spec (tamrf run --workers N overrides it)"
        )
    accepted = _accepted_options(path, kind)
    if accepted is None:
        return
    label, names = accepted
    for key in options:
        if key not in names:
            close = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ClusterSpecError(
                f"cluster spec {path}: option {key!r} is not a parameter of {label}: {hint}fix "
                f"or remove it (options are the keyword arguments of {label})"
            )


def _accepted_options(path: Path, kind: str) -> tuple[str, set[str]] | None:
    """The class named in messages and its keyword arguments; None where the library is
    absent and the cluster cannot start anyway (``cuda``: the start says what to install)."""
    from distributed import LocalCluster, Nanny, Worker

    local = _parameters(LocalCluster.__init__, Nanny.__init__, Worker.__init__)
    if kind == "local":
        return "distributed.LocalCluster", local
    if kind == "cuda":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            return None
        return "dask_cuda.LocalCUDACluster", local | _parameters(LocalCUDACluster.__init__)
    try:
        from dask_jobqueue.core import Job, JobQueueCluster
        from dask_jobqueue.slurm import SLURMJob
    except ImportError:
        raise ClusterSpecError(
            f"cluster spec {path} is a slurm cluster but dask-jobqueue is not installed: "
            f"{_INSTALL.format(extra='slurm')}"
        ) from None
    # SLURMCluster passes its other keyword arguments to SLURMJob, then to Job.
    names = _parameters(JobQueueCluster.__init__, SLURMJob.__init__, Job.__init__)
    return "dask_jobqueue.SLURMCluster", names - {"name"}


def _parameters(*functions: Callable[..., Any]) -> set[str]:
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {
        p.name
        for function in functions
        for p in inspect.signature(function).parameters.values()
        if p.kind in named
    } - _NOT_OPTIONS


def _kubernetes_spec(path: Path, manifest: dict[str, Any]) -> ClusterSpec:
    """A DaskCluster manifest as a spec: its shape is checked here (the Kubernetes API checks
    the rest against the operator's CRD when the cluster is created)."""
    where = f"cluster spec {path}"
    if manifest.get("apiVersion") != _MANIFEST_API or manifest.get("kind") != "DaskCluster":
        raise ClusterSpecError(
            f"{where}: apiVersion {manifest.get('apiVersion')!r} and kind "
            f"{manifest.get('kind')!r}: a Kubernetes spec is a Dask operator manifest "
            f"(apiVersion: {_MANIFEST_API}, kind: DaskCluster)"
        )
    _no_unknown_keys(manifest, ("apiVersion", "kind", "metadata", "spec"), where,
                     "the keys of a DaskCluster")  # fmt: skip
    metadata = _mapping(manifest, "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not _DNS_NAME.fullmatch(name) or len(name) > _KUBE_NAME_MAX:
        raise ClusterSpecError(
            f"{where}: metadata.name {name!r} is not a lower-case DNS name of at most "
            f"{_KUBE_NAME_MAX} characters (letters, digits, '-'): fix it"
        )
    for role in ("worker", "scheduler"):
        containers = _mapping(manifest, "spec", role, "spec").get("containers")
        if not isinstance(containers, list) or not containers:
            raise ClusterSpecError(
                f"{where}: spec.{role}.spec.containers is missing or empty: give the {role} "
                "container (image, args), as in infra/clusters/kubernetes.yaml"
            )
        for container in containers:
            if not isinstance(container, dict) or not container.get("image"):
                raise ClusterSpecError(
                    f"{where}: a container of spec.{role}.spec.containers has no image: give the "
                    "image built from infra/docker/Dockerfile.gpu (or .cpu)"
                )
    selector = _mapping(manifest, "spec", "scheduler", "service", "selector")
    if selector.get("dask.org/cluster-name") != name:
        raise ClusterSpecError(
            f"{where}: spec.scheduler.service.selector['dask.org/cluster-name'] is not the "
            f"cluster's name {name!r}: set it to {name!r} (the service must select this "
            "cluster's scheduler pod)"
        )
    replicas = _count(path, "spec.worker.replicas", manifest["spec"]["worker"].get("replicas", 0),
                      minimum=1)  # fmt: skip
    wait = _mapping(metadata, "annotations").get(_WAIT_ANNOTATION, 600.0)
    wait_s = _seconds(path, f"metadata.annotations[{_WAIT_ANNOTATION!r}]", wait)
    return ClusterSpec(name, "kubernetes", manifest, replicas, None, wait_s, str(path))


def _mapping(document: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    """``document[k1][k2]...``, or an empty mapping where a level is absent or not a mapping."""
    for key in keys:
        value = document.get(key)
        document = value if isinstance(value, Mapping) else {}
    return document


def slurm_options(spec: ClusterSpec, worker_env: Mapping[str, str]) -> dict[str, Any]:
    """``SLURMCluster`` keyword arguments: the spec's options, with ``worker_env`` exported at
    the start of the job script's prologue (the worker and its nanny must start with them;
    the spec's own prologue comes after, so it can change them)."""
    options = dict(spec.options)
    exports = [f"export {name}={shlex.quote(value)}" for name, value in worker_env.items()]
    options["job_script_prologue"] = [*exports, *(options.get("job_script_prologue") or [])]
    return options


def _create_slurm(spec: ClusterSpec, worker_env: Mapping[str, str]) -> Any:
    from dask_jobqueue import SLURMCluster

    # Checked before the scheduler starts: without sbatch every job submission fails in the
    # background and the run would only notice when waiting for workers times out.
    if shutil.which("sbatch") is None:
        raise ClusterStartError(
            f"the slurm cluster of {spec.source} submits workers with sbatch, which is not on "
            "PATH here: run tamrf on a SLURM login node (or in a job), or use --cluster auto"
        )
    return SLURMCluster(**slurm_options(spec, worker_env))


def kubernetes_manifest(spec: ClusterSpec, worker_env: Mapping[str, str]) -> dict[str, Any]:
    """The DaskCluster a run creates: the spec's manifest with a name of its own (so that two
    runs never share, or delete, one cluster), the spec's worker count, and ``worker_env`` in
    every worker container where the manifest does not set those variables."""
    manifest = copy.deepcopy(dict(spec.options))
    name = f"{manifest['metadata']['name']}-{uuid.uuid4().hex[:8]}"
    manifest["metadata"]["name"] = name
    manifest["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] = name
    worker = manifest["spec"]["worker"]
    worker["replicas"] = spec.workers
    for container in worker["spec"]["containers"]:
        env = container.setdefault("env", [])
        present = {item.get("name") for item in env}
        env.extend({"name": k, "value": v} for k, v in worker_env.items() if k not in present)
    return manifest


def _create_kubernetes(spec: ClusterSpec, worker_env: Mapping[str, str]) -> Any:
    try:
        import kr8s
        from dask_kubernetes.operator import KubeCluster
    except ImportError:
        raise ClusterStartError(
            f"the kubernetes cluster of {spec.source} needs dask-kubernetes, which is not "
            f"installed: {_INSTALL.format(extra='kubernetes')}"
        ) from None
    manifest = kubernetes_manifest(spec, worker_env)
    namespace = manifest["metadata"].get("namespace")
    fix = ("run tamrf where kubectl works (a kubeconfig, or a pod with a service account) "
           "with the Dask operator installed in the cluster")  # fmt: skip
    # Credentials first: a KubeCluster that fails later stays registered for clean-up at exit.
    try:
        kr8s.api(namespace=namespace)
    except Exception as error:
        raise ClusterStartError(
            f"the kubernetes cluster of {spec.source} cannot reach Kubernetes ({error}): {fix}"
        ) from None
    try:
        return KubeCluster(custom_cluster_spec=manifest, namespace=namespace, quiet=True)
    except Exception as error:
        raise ClusterStartError(
            f"the kubernetes cluster {manifest['metadata']['name']} of {spec.source} did not "
            f"start ({type(error).__name__}: {error}): {fix}"
        ) from error


_WAIT_HINTS = {
    "local": "this machine may be short of memory or processes: try fewer --workers",
    "cuda": "check nvidia-smi: the GPUs may be busy or out of memory",
    "slurm": "check squeue --me: a pending job waits for its partition, GPUs (--gres), "
    "walltime or account; a job that ended says why in its log (log_directory); raise "
    "wait_for_workers_s in the spec to wait longer",
    "kubernetes": "check kubectl get pods -l dask.org/component=worker: Pending means no node "
    "has the requested GPU, CPU or memory, ImagePullBackOff that the image cannot be pulled; "
    f"raise the annotation {_WAIT_ANNOTATION} of the manifest to wait longer",
}


def wait_for_first_worker(client: Any, spec: ClusterSpec) -> None:
    """Return once the cluster has a worker; a clear error after ``spec.wait_for_workers_s``."""
    try:
        client.wait_for_workers(1, timeout=spec.wait_for_workers_s)
    except TimeoutError:
        raise ClusterStartError(
            f"the {spec.kind} cluster of {spec.source} has no worker after "
            f"{spec.wait_for_workers_s:g} s: {_WAIT_HINTS[spec.kind]}"
        ) from None
