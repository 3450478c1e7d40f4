"""Cluster specs (infra/clusters), the images (infra/docker) and the README that documents them:
every spec parses and builds what it can build without a scheduler of its own, mistakes are
clear errors before anything starts, and every command a spec or an image runs exists."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import re
import shlex
import shutil
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from cli_process import tamrf

from pipelines.cluster import WORKER_ENV, ClusterConfig, start_cluster
from pipelines.cluster_specs import (
    ClusterSpec,
    ClusterSpecError,
    ClusterStartError,
    kubernetes_manifest,
    load_spec,
    slurm_options,
    spec_dir,
    wait_for_first_worker,
)

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "infra" / "clusters"
DOCKERFILES = sorted((REPO / "infra" / "docker").glob("Dockerfile.*"))
README_SECTION = "## From a laptop to a continent"


def _crd_schema() -> dict:
    """The openAPI schema of the DaskCluster resource, as the operator's CRD ships it."""
    import dask_kubernetes

    crds = Path(dask_kubernetes.__file__).parent / "operator/deployment/helm"
    crd = yaml.safe_load((crds / "dask-kubernetes-operator/crds/daskcluster.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _assert_command_exists(argv: list[str]) -> None:
    """``argv`` starts a program this installation has: the ``tamrf`` console script of
    pyproject.toml, a ``dask`` subcommand, or ``PYTHON -m MODULE``."""
    program = Path(argv[0]).name
    if program == "tamrf":
        scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
        module, attribute = scripts["tamrf"].split(":")
        assert callable(getattr(importlib.import_module(module), attribute))
    elif program == "dask":
        (script,) = importlib.metadata.entry_points(group="console_scripts", name="dask")
        script.load()
        (command,) = importlib.metadata.entry_points(group="dask_cli", name=argv[1])
        command.load()  # `dask worker`, `dask scheduler`: commands of distributed
    elif program.startswith("python") and argv[1] == "-m":
        assert Path(argv[0]).is_file(), f"{argv[0]} is not a Python here"
        assert importlib.util.find_spec(argv[2]) is not None, f"no module {argv[2]}"
    else:
        pytest.fail(f"unknown program {argv[0]!r} in {argv}")


def _dockerfile(path: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(ARG defaults, [(INSTRUCTION, arguments)]) with continuation lines joined."""
    text = "\n".join(line for line in path.read_text().splitlines()
                     if not line.lstrip().startswith("#"))  # fmt: skip
    steps = [step.split(None, 1) for step in re.sub(r"\\\n\s*", " ", text).splitlines() if step]
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    return args, [(kind.upper(), rest) for kind, rest in steps]


def _pip_installs(path: Path) -> list[str]:
    """The ``pip install`` commands of a Dockerfile's RUN steps, build arguments filled in."""
    args, steps = _dockerfile(path)
    commands = []
    for kind, rest in steps:
        if kind != "RUN":
            continue
        for name, value in args.items():
            rest = rest.replace("${" + name + "}", value).replace("$" + name, value)
        commands += [c.strip() for c in rest.split("&&") if c.strip().startswith("pip install")]
    return commands


def _readme_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(README_SECTION)
    end = text.find("\n## ", start + len(README_SECTION))
    return text[start : None if end < 0 else end]


# --- every spec parses and builds -------------------------------------------------------


def test_every_bundled_spec_parses_by_name_and_by_file() -> None:
    assert spec_dir() == SPECS
    kinds = {}
    for path in sorted(SPECS.glob("*.yaml")):
        by_name, by_file = load_spec(path.stem), load_spec(path)
        assert by_name == by_file
        kinds[path.stem] = by_file.kind
        assert by_file.source == str(path)
    assert kinds == {"local": "local", "cuda": "cuda", "slurm": "slurm",
                     "kubernetes": "kubernetes"}  # fmt: skip


def test_the_slurm_spec_writes_the_job_script_it_promises(tmp_path, monkeypatch) -> None:
    """dask-jobqueue writes the job script without sbatch (no job is submitted): partition,
    CPUs, memory, walltime and GPU directives, the workers' environment exported before the
    spec's prologue, and a worker command that exists here."""
    from dask.utils import parse_bytes
    from dask_jobqueue import SLURMCluster
    from dask_jobqueue.slurm import slurm_format_bytes_ceil

    monkeypatch.chdir(tmp_path)  # the spec's log_directory is created where tamrf runs
    spec = load_spec("slurm")
    options = dict(slurm_options(spec, WORKER_ENV))
    options["scheduler_options"] = {"dashboard_address": ":0"}  # any free port in a test
    with SLURMCluster(**options) as cluster:
        script = cluster.job_script()
        assert not cluster.workers, "no job submitted"
    lines = script.splitlines()
    opts = spec.options
    assert opts["queue"] == "gpu" and opts["walltime"] == "04:00:00"
    for directive in (f"#SBATCH -p {opts['queue']}", f"#SBATCH --cpus-per-task={opts['job_cpu']}",
                      f"#SBATCH --mem={slurm_format_bytes_ceil(parse_bytes(opts['memory']))}",
                      f"#SBATCH -t {opts['walltime']}", "#SBATCH --gres=gpu:1"):  # fmt: skip
        assert directive in lines, f"{directive} not in\n{script}"
    exports = [f"export {k}={v}" for k, v in WORKER_ENV.items()]
    prologue = [*exports, *opts["job_script_prologue"]]
    start = lines.index(prologue[0])
    assert lines[start : start + len(prologue)] == prologue
    worker = shlex.split(lines[-1])
    assert lines.index(lines[-1]) > start + len(prologue) - 1
    assert worker[:3] == [sys.executable, "-m", "distributed.cli.dask_worker"]
    _assert_command_exists(worker)
    assert worker[worker.index("--nthreads") + 1] == str(opts["cores"]) == "2"
    assert (tmp_path / opts["log_directory"]).is_dir()


def test_the_kubernetes_manifest_is_a_valid_daskcluster() -> None:
    """The manifest and the one a run creates validate against the operator's CRD schema, have
    the containers, ports and service make_cluster_spec builds, start `dask worker` and
    `dask scheduler`, and take credentials from a Secret, never from literal values."""
    import jsonschema
    from dask_kubernetes.operator import make_cluster_spec

    schema = _crd_schema()
    spec = load_spec("kubernetes")
    raw = yaml.safe_load((SPECS / "kubernetes.yaml").read_text())
    jsonschema.validate(raw, schema)
    created = kubernetes_manifest(spec.with_workers(3), WORKER_ENV)
    jsonschema.validate(created, schema)
    broken = kubernetes_manifest(spec, WORKER_ENV)
    broken["spec"]["worker"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):  # the schema is not vacuous
        jsonschema.validate(broken, schema)

    # A run's own cluster: a fresh name, selected by its service; the spec is left alone.
    name = created["metadata"]["name"]
    assert re.fullmatch(r"tamrf-[0-9a-f]{8}", name) and len(name + "-scheduler") <= 63
    assert created["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == name
    assert created["spec"]["worker"]["replicas"] == 3
    assert spec.options == raw, "the loaded spec is not modified"

    # The shape dask-kubernetes builds itself, with `dask worker` for its `dask-worker`.
    reference = make_cluster_spec("tamrf", image="img", n_workers=2)["spec"]
    ours = created["spec"]
    for role in ("worker", "scheduler"):
        (container,) = ours[role]["spec"]["containers"]
        (theirs,) = reference[role]["spec"]["containers"]
        assert container["name"] == theirs["name"]
        assert {p["name"] for p in theirs["ports"]} <= {p["name"] for p in container["ports"]}
        assert container["args"][:2] == ["dask", role]
        _assert_command_exists(container["args"])
    their_args = reference["worker"]["spec"]["containers"][0]["args"][1:]
    our_args = ours["worker"]["spec"]["containers"][0]["args"]
    assert [a for a in our_args if a in their_args] == their_args  # name, dashboard
    assert ours["scheduler"]["service"]["ports"] == reference["scheduler"]["service"]["ports"]

    env = {e["name"]: e for e in ours["worker"]["spec"]["containers"][0]["env"]}
    assert {k: env[k]["value"] for k in WORKER_ENV} == WORKER_ENV
    secrets = [e for e in env.values() if re.search("KEY|SECRET|TOKEN|PASSWORD", e["name"])]
    assert secrets, "credentials for the object store"
    for secret in secrets:
        assert "value" not in secret and secret["valueFrom"]["secretKeyRef"]["name"]


def test_the_local_spec_starts_a_local_cluster() -> None:
    config = ClusterConfig(kind="local", n_workers=1)
    assert config.cluster_spec().source == str(SPECS / "local.yaml")
    with start_cluster(config) as cluster:
        assert cluster.device == "cpu" and cluster.threads_per_worker == 2
        assert len(cluster.client.scheduler_info()["workers"]) == 1
        assert cluster.client.submit(sum, [1, 2]).result() == 3
        assert cluster.client.cluster.status.name == "running"
        started = cluster.client.cluster
    assert started.status.name == "closed", "a cluster the run started is closed at the end"


def test_the_cuda_spec_without_gpus_is_the_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    config = ClusterConfig(spec="cuda")
    assert config.model_device == "cuda"
    with (
        pytest.raises(ValueError, match="nvidia-smi lists no GPU here: use --cluster cpu"),
        start_cluster(config),
    ):
        pass


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="this machine has sbatch")
def test_slurm_without_sbatch_is_a_clear_error_before_any_scheduler() -> None:
    started = time.monotonic()
    with (
        pytest.raises(ClusterStartError, match="sbatch, which is not on PATH here: run tamrf"),
        start_cluster(ClusterConfig(kind="slurm")),
    ):
        pass
    assert time.monotonic() - started < 10


def test_kubernetes_without_credentials_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with (
        pytest.raises(ClusterStartError, match=r"cannot reach Kubernetes .*: run tamrf where"),
        start_cluster(ClusterConfig(kind="kubernetes")),
    ):
        pass


def test_no_worker_in_time_is_a_clear_error() -> None:
    """A scheduler whose workers never come (a queued job, a pending pod)."""
    from distributed import Client, LocalCluster

    spec = ClusterSpec("hpc", "slurm", wait_for_workers_s=0.5, source="my-slurm.yaml")
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address="127.0.0.1:0") as empty,
        Client(empty) as client,
        pytest.raises(ClusterStartError) as error,
    ):
        wait_for_first_worker(client, spec)
    message = str(error.value)
    assert "slurm cluster of my-slurm.yaml has no worker after 0.5 s" in message
    assert "squeue" in message and "wait_for_workers_s" in message


# --- mistakes are clear errors ------------------------------------------------------------


def test_cluster_names_and_combinations() -> None:
    assert ClusterConfig(kind="slurm").model_device == "auto"
    assert ClusterConfig(kind="local").model_device == "cpu"
    assert ClusterConfig(kind="cpu").model_device == "cpu"
    assert ClusterConfig(kind="auto", address="tcp://h:8786").model_device == "auto"
    assert ClusterConfig(kind="slurm", n_workers=7).cluster_spec().workers == 7
    assert ClusterConfig(kind="cpu", spec=str(SPECS / "local.yaml")).cluster_spec().kind == "local"
    with pytest.raises(ClusterSpecError, match=r"did you mean 'slurm'.*--cluster-spec FILE"):
        ClusterConfig(kind="slurmm")
    with pytest.raises(ClusterSpecError, match="starts a local cluster: leave out --cluster"):
        ClusterConfig(kind="slurm", spec=str(SPECS / "local.yaml"))
    with pytest.raises(ClusterSpecError, match="give only one of them"):
        ClusterConfig(kind="kubernetes", address="tcp://h:8786")
    with pytest.raises(ClusterSpecError, match=r"nope\.yaml does not exist"):
        ClusterConfig(spec="nope.yaml")


_SLURM = "kind: slurm\noptions: {cores: 2, memory: 8GB}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: slurm\noptions: [cores", ["is not valid YAML at line", "fix the file"]),
        ("- kind\n- slurm\n", ["is not a mapping of keys"]),
        ("kind: local\nworker: 2\n", ["unknown key 'worker'", "did you mean 'workers'?"]),
        ("kind: pbs\n", ["kind 'pbs' is not local, cuda or slurm"]),
        ("kind: slurm\noptions:\n  wallltime: '01:00:00'\n",
         ["option 'wallltime'", "SLURMCluster", "did you mean 'walltime'?"]),
        ("kind: local\noptions: {thread_per_worker: 2}\n",
         ["option 'thread_per_worker'", "did you mean 'threads_per_worker'?"]),
        ("kind: local\noptions: {n_workers: 2}\n", ["'n_workers'", "workers: N at the top"]),
        (_SLURM + "workers: 2\nadapt: {minimum: 1, maximum: 4}\n", ["both workers and adapt"]),
        (_SLURM + "adapt: {minimum: 4, maximum: 2}\n", ["1 <= minimum <= maximum"]),
        ("kind: local\nworkers: 0\n", ["workers 0 is not a whole number >= 1"]),
        ("kind: local\nwait_for_workers_s: soon\n", ["wait_for_workers_s 'soon'"]),
        ("apiVersion: kubernetes.dask.org/v2\nkind: DaskCluster\n", ["kind: DaskCluster)"]),
        ("k8s:name", ["metadata.name 'Tamrf_X'", "lower-case DNS name"]),
        ("k8s:selector", ["selector['dask.org/cluster-name']", "set it to 'tamrf'"]),
        ("k8s:containers", ["spec.worker.spec.containers is missing or empty"]),
    ],
)  # fmt: skip
def test_a_malformed_spec_names_the_file_the_key_and_the_fix(tmp_path, text, expected) -> None:
    if text.startswith("k8s:"):
        manifest = yaml.safe_load((SPECS / "kubernetes.yaml").read_text())
        change = text.removeprefix("k8s:")
        if change == "name":
            manifest["metadata"]["name"] = "Tamrf_X"
        elif change == "selector":
            manifest["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] = "x"
        else:
            manifest["spec"]["worker"]["spec"]["containers"] = []
        text = yaml.safe_dump(manifest)
    path = tmp_path / "my-cluster.yaml"
    path.write_text(text)
    with pytest.raises(ClusterSpecError) as error:
        ClusterConfig(spec=str(path))
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    for fragment in expected:
        assert fragment in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--cluster", "slurmm"], "cluster 'slurmm' is neither auto, cpu, cuda nor a spec"),
        (["--cluster-spec", "missing.yaml"], "cluster spec file missing.yaml does not exist"),
        (["--cluster-spec", "BROKEN"], "is not valid YAML"),
        (["--catalog", "earth-search-v1", "--bbox", "1.4,43.5,1.5,43.6", "--start",
          "2023-03-01", "--end", "2023-03-31", "--cluster", "slurmm"], "did you mean 'slurm'?"),
    ],
)  # fmt: skip
def test_tamrf_run_refuses_a_bad_cluster_at_once(tmp_path, args, expected) -> None:
    """One ``error:`` line and exit status 2, before any simulation, search or cluster (the
    check runs before torch is imported): the whole process takes well under 2 s."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: slurm\noptions: [cores")
    out = tmp_path / "out"
    args = [str(broken) if a == "BROKEN" else a for a in args]
    started = time.monotonic()
    ran = tamrf(["run", *args, "--out-dir", str(out)], timeout_s=60)
    elapsed = time.monotonic() - started
    assert ran.exit_code == 2, ran.output
    lines = ran.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not out.exists(), "nothing written"
    assert elapsed < 2.0, f"{elapsed:.2f} s to refuse a bad cluster"


# --- images and README ------------------------------------------------------------------


def test_every_command_an_image_runs_exists() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.gpu"]
    for path in DOCKERFILES:
        _, steps = _dockerfile(path)
        for kind, rest in steps:
            if kind in ("CMD", "ENTRYPOINT"):
                _assert_command_exists(json.loads(rest))  # the exec form only
            if kind == "COPY":
                *sources, _ = rest.split()
                assert all((REPO / s).exists() for s in sources), rest


def test_the_images_install_with_the_readmes_commands() -> None:
    """Each image's pip installs are the README's, torch is constraints.txt's version, the
    extras exist, and the bases are the documented ones."""
    section = _readme_section()
    readme_lines = {line.strip() for line in section.splitlines()}
    pinned = re.search(r"^torch==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    bases, installs_of = {}, {}
    for path in DOCKERFILES:
        args, steps = _dockerfile(path)
        base = next(rest for kind, rest in steps if kind == "FROM")
        bases[path.suffix] = args.get(base.strip("${}"), base)
        installs = installs_of[path.suffix] = _pip_installs(path)
        assert len(installs) == 2, installs
        for command in installs:
            assert command in readme_lines, f"{path.name}: {command!r} is not in the README"
        torch_step, project_step = installs
        assert torch_step.startswith("pip install --index-url https://download.pytorch.org/whl/")
        assert torch_step.endswith(f" torch=={pinned.group(1)}")
        assert project_step.startswith('pip install -c constraints.txt -e ".[')
        named = re.search(r"\[(.*)\]", project_step).group(1).split(",")
        assert set(named) <= set(extras), named
    assert bases[".cpu"] == "python:3.11-slim-bookworm"
    assert re.fullmatch(r"nvidia/cuda:[\d.]+-runtime-ubuntu[\d.]+", bases[".gpu"])
    assert "/whl/cpu " in installs_of[".cpu"][0] and "/whl/cu" in installs_of[".gpu"][0]
    assert '".[gpu,' in installs_of[".gpu"][1], "the GPU image brings dask-cuda"
    for path in DOCKERFILES:
        assert f"docker build -f infra/docker/{path.name}" in section
