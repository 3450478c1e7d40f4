"""infra/prefect.yaml: checked against the flows (`tamrf deploy-check`), deployed with the
`prefect deploy` CLI to a real Prefect server (the session's test server), and one run of the
simulated-catalog deployment executed by a `process` worker, as an operator would: its
artifacts read back through the Prefect API and its quicklooks next to the store."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

PREFECT_FILE = Path("infra") / "prefect.yaml"
POOL = "tamrf-process"
SMOKE = "tamrf-regional-run/simulated-smoke"
SMALL = {"size_px": 36, "start": "2022-07-01", "end": "2022-07-20"}
"""A small region (as the demo command's test): one 360 m tile, two output dates."""
RUN_TIMEOUT_S = 420


def prefect_yaml(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / PREFECT_FILE).read_text())


def test_the_repository_deployments_match_their_flows(repo_root, monkeypatch):
    from flows.cli import app
    from flows.deployments import check_deployments

    assert check_deployments(repo_root / PREFECT_FILE, root=repo_root) == []
    document = prefect_yaml(repo_root)
    names = {d["name"]: d for d in document["deployments"]}
    assert names["simulated-smoke"]["entrypoint"] == "flows/regional_run.py:regional_run"
    production = names["toulouse-nightly"]
    assert production["entrypoint"] == "flows/production_run.py:production_run"
    assert [s["active"] for s in production["schedules"]] == [False], "off until turned on"
    assert {d["work_pool"]["name"] for d in document["deployments"]} == {POOL}
    monkeypatch.chdir(repo_root)  # where `prefect deploy` runs
    result = CliRunner().invoke(app, ["deploy-check", str(PREFECT_FILE)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok:")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("catalog"), "missing required parameter(s) catalog of production_run"),
        (lambda p: p.update(tile_size=3), "unknown parameter(s) tile_size: production_run takes"),
        (lambda p: p.update(tiles_in_flight="two"), "tiles_in_flight: 'two' is not of type"),
        (lambda p: p.update(start="2023-13-01"), "parameter start: '2023-13-01' is not a 'date'"),
    ],
    ids=["missing", "unknown", "type", "date"],
)
def test_a_deployment_that_does_not_match_its_flow_gives_one_clear_error(
    repo_root, tmp_path, monkeypatch, change, message
):
    from flows.cli import app

    document = prefect_yaml(repo_root)
    production = next(d for d in document["deployments"] if d["name"] == "toulouse-nightly")
    change(production["parameters"])
    broken = tmp_path / "prefect.yaml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.chdir(repo_root)
    result = CliRunner().invoke(app, ["deploy-check", str(broken)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: deployment 'toulouse-nightly'")
    assert message in lines[0]


def test_a_deployment_without_an_entrypoint_file_or_a_pool_is_named(repo_root, tmp_path):
    from flows.deployments import check_deployments

    document = prefect_yaml(repo_root)
    smoke = next(d for d in document["deployments"] if d["name"] == "simulated-smoke")
    smoke["entrypoint"] = "flows/no_such_file.py:regional_run"
    del smoke["work_pool"]
    broken = tmp_path / "prefect.yaml"
    broken.write_text(yaml.safe_dump(document))
    problems = check_deployments(broken, root=repo_root)
    assert len(problems) == 2
    assert "'simulated-smoke' has no work pool" in problems[0]
    assert "entrypoint file flows/no_such_file.py is not in" in problems[1]


# ---------------------------------------------------------------------------------------------
# Deployed and run by a worker
# ---------------------------------------------------------------------------------------------


def prefect_command(args: list[str], env: dict[str, str], cwd: Path) -> None:
    """``prefect ARGS`` (the CLI of this environment), which must succeed."""
    command = [str(Path(sys.executable).with_name("prefect")), "--no-prompt", *args]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def stop(*groups: int) -> None:
    """Stop process groups this test started (the worker's, and the flow run's, which the
    worker starts in a session of its own): SIGTERM, then SIGKILL to what is left."""
    for group in groups:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)
            deadline = time.monotonic() + 15
            while _alive(group) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _alive(group):
                break


def flow_run(flow_run_id) -> Any:
    """The flow run as the Prefect API has it now."""
    from prefect import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_flow_run(flow_run_id)

    return run_coro_as_sync(read())


def read_run_artifacts(flow_run_id) -> dict[str, object]:
    """The run's artifacts by key (the latest version of each), through the Prefect API."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

    artifacts = run_coro_as_sync(read())
    return {a.key: a for a in sorted(artifacts, key=lambda a: a.created) if a.key}


def test_the_simulated_deployment_runs_on_a_process_worker(prefect_harness, repo_root, tmp_path):
    import matplotlib.image
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    from flows.run_reporting import PROGRESS_KEY, SUMMARY_KEY, TILE_COLUMNS, TILES_KEY
    from pipelines.level3 import completion_records
    from pipelines.quicklooks import DPIS, FIGSIZE_IN, MAX_PNG_BYTES

    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TAMRF_REPO": str(repo_root),
    }
    prefect_command(["work-pool", "create", POOL, "--type", "process", "--overwrite"], env,
                    repo_root)  # fmt: skip
    prefect_command(["deploy", "--prefect-file", str(PREFECT_FILE), "--all"], env, repo_root)

    out = tmp_path / "smoke"
    run = run_deployment(SMOKE, parameters={"out_dir": str(out), **SMALL}, timeout=0)
    log = tmp_path / "worker.log"
    with open(log, "w") as stream:
        worker = subprocess.Popen(
            [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", POOL,
             "--run-once", "--limit", "1"],
            env=env, cwd=tmp_path, stdout=stream, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        try:
            worker.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no result after {RUN_TIMEOUT_S} s; worker log:\n{log.read_text()}")
        state = flow_run(run.id).state
        assert state is not None and state.type == StateType.COMPLETED, (
            f"flow run ended {state}; worker log:\n{log.read_text()[-6000:]}"
        )
    finally:
        # "host:pid" once the worker started the flow run's process.
        started = (flow_run(run.id).infrastructure_pid or "").rpartition(":")[2]
        groups = [worker.pid, *([int(started)] if started.isdigit() else [])]
        if worker.poll() is None:
            stop(*groups)
        worker.wait()
        stop(*groups)  # anything the flow run left behind
    assert not any(_alive(g) for g in groups), "no process of the test is left"

    artifacts = read_run_artifacts(run.id)
    assert artifacts[PROGRESS_KEY].data == 100.0
    rows = json.loads(artifacts[TILES_KEY].data)
    assert rows and all(list(row) == list(TILE_COLUMNS) for row in rows)
    for row in rows:
        assert row["status"] == "predicted" and row["retries"] == 0 and row["error"] == ""
        assert re.fullmatch(r"\d+ of \d+", row["S2 dates kept"])
        assert 0 <= row["S2 clear fraction"] <= 1 and row["duration (s)"] > 0

    summary = json.loads((out / "run-summary.json").read_text())
    # The pixel the series shows, with its clear inputs, in the tile's summary and record.
    record = completion_records(summary["level3"]["store"])[summary["tiles"][0]["tile"]]
    pixel = summary["tiles"][0]["pixel"]
    assert record["provenance"]["pixel"] == pixel
    assert set(pixel["observations"]) == {"S2_B4", "S2_B8", "LS_B10"}
    assert sum(len(o["dates"]) for o in pixel["observations"].values()) > 0
    quicklooks = summary["level3"]["quicklooks"]
    epsg = Path(summary["level3"]["store"]).stem
    tile = summary["tiles"][0]["tile"]
    names = sorted(Path(q).name for q in quicklooks)
    assert names[0] == f"{epsg}-pixel-{tile}.png"
    assert re.fullmatch(rf"{epsg}-rgb-2022-07-(01|15)\.png", names[1])
    sizes = {(round(FIGSIZE_IN[1] * dpi), round(FIGSIZE_IN[0] * dpi)) for dpi in DPIS}
    markdown = artifacts[SUMMARY_KEY].data
    embedded = re.findall(r"!\[[^]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert len(embedded) == 2
    for quicklook in quicklooks:
        path = Path(quicklook)
        assert path.parent == out / "level3" / "quicklooks", "next to the store"
        data = path.read_bytes()
        assert len(data) <= MAX_PNG_BYTES
        assert matplotlib.image.imread(io.BytesIO(data)).shape[:2] in sizes
        assert base64.b64encode(data).decode() in embedded, "the artifact embeds the file"
        assert f"`{quicklook}`" in markdown, "and says where it is stored"
