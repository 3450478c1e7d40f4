"""``tamrf evaluate`` end to end on a tiny simulated region, as a user runs it, and the same
evaluation as a Prefect flow on a real (temporary) Prefect server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_process import tamrf

TINY_REGION = ["--seed", "7", "--size-px", "120", "--start", "2022-05-01", "--end", "2022-07-20"]
TASK_TITLES = ("## gap-filling", "## band-sharpening", "## fusion", "## thermal-sharpening")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("evaluation") / "report"
    ran = tamrf(["evaluate", str(out), *TINY_REGION, "--no-progress"], timeout_s=600)
    assert ran.exit_code == 0, ran.output
    return out, ran.output


def test_the_report_has_every_task_method_and_figure(report) -> None:
    out, output = report
    assert f"report: {out.absolute() / 'report.md'}" in output
    assert "UNTRAINED" not in output, "the bundled model by default"
    markdown = (out / "report.md").read_text()
    assert "UNTRAINED" not in markdown and "Model: tamrf-sim-small" in markdown
    for title in TASK_TITLES:
        assert title in markdown
    assert "## Where TAMRF wins and where it loses" in markdown
    for method in ("linear", "bicubic", "starfm", "dms", "dms+residual", "tamrf+residual"):
        assert f"| {method} |" in markdown, method
    assert "against the simulator's 10 m truth" in markdown
    assert "border reduced from the spec's 30 px" in markdown  # 120 px: 40 Landsat pixels

    document = json.loads((out / "report.json").read_text())
    assert document["metadata"]["untrained_model"] is False
    assert document["metadata"]["model"]["origin"]["name"] == "tamrf-sim-small"
    assert document["protocol"]["border_px"] == 10 and document["dataset"]["has_truth"]
    for row in document["summary"]:
        assert row["pixels"] > 0 and row["dates"] > 0 and row["rmse"] is not None, row
    # Every pooled figure is backed by the per-date figures of the same JSON.
    key = ("task", "method", "reference", "split", "sensor", "band")
    pixels: dict[tuple, int] = {}
    for row in document["per_date"]:
        pixels[tuple(row[k] for k in key)] = (
            pixels.get(tuple(row[k] for k in key), 0) + row["pixels"]
        )
    for row in document["summary"]:
        assert pixels[tuple(row[k] for k in key)] == row["pixels"]

    for images in document["figures"].values():
        for name in images:
            assert f"]({name})" in markdown
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert {"gap-length.png", "fusion-strip.png", "thermal-sharpening-bands.png"} <= {
        name for images in document["figures"].values() for name in images
    }


def test_the_untrained_stand_in_is_only_behind_its_flag_and_flagged(tmp_path) -> None:
    out = tmp_path / "report"
    ran = tamrf(["evaluate", str(out), *TINY_REGION, "--checkpoint", "untrained", "--tasks",
                 "thermal-sharpening", "--no-brisque", "--no-progress"])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert "UNTRAINED" in ran.output, "flagged on the terminal"
    assert "UNTRAINED stand-in" in (out / "report.md").read_text(), "and in the report"
    assert json.loads((out / "report.json").read_text())["metadata"]["untrained_model"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "gap-filling,super-resolution"], "choose among"),
        (["--checkpoint", "/nonexistent/weights"], "does not exist"),
        (["--s2-cube", "/tmp/s2.zarr"], "both --s2-cube and --landsat-cube"),
        (["--holdout", "random"], "holdout"),
        (["--precision", "fp8"], "fp8"),
    ],
)
def test_bad_input_is_one_error_line_before_any_work(tmp_path, args, message) -> None:
    out = tmp_path / "report"
    started = time.perf_counter()
    ran = tamrf(["evaluate", str(out), *args])
    assert ran.exit_code == 2, ran.output
    assert "error:" in ran.output and message in ran.output
    assert "Traceback" not in ran.output
    assert not out.exists(), "nothing written"
    assert time.perf_counter() - started < 30  # an interpreter start, no simulation


def test_the_flow_publishes_progress_and_the_report(prefect_harness, tmp_path) -> None:
    from prefect.artifacts import Artifact

    from flows.evaluation_flow import (
        EVALUATION_PROGRESS_KEY,
        EVALUATION_REPORT_KEY,
        evaluation_flow,
    )

    outcome = evaluation_flow(
        str(tmp_path / "flow-report"),
        tasks=["thermal-sharpening"],
        seed=7,
        size_px=120,
        start="2022-05-01",
        end="2022-06-30",
        brisque=False,
    )
    report = Path(outcome["report"])
    assert report.is_file() and "## thermal-sharpening" in report.read_text()
    assert "## gap-filling" not in report.read_text()
    progress = Artifact.get(EVALUATION_PROGRESS_KEY)
    assert progress is not None and float(progress.data) == 100.0
    published = Artifact.get(EVALUATION_REPORT_KEY)
    assert published is not None and "dms+residual" in published.data
