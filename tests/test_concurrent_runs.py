"""Two identical runs started at once on one output: one runs, the other is refused with the
holder named, and what the first leaves (simulated product, store, records) is whole.

Two demo runs on one directory used to race on the simulated product: one crashed with
"Directory not empty", the other exited 0 on a product missing COGs, which later runs kept
reusing. The run lock now covers the simulation as well as the tiles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from cli_process import REPO_ROOT, tamrf

DEMO = ["run", "--seed", "7", "--size-px", "48", "--start", "2022-05-01", "--end",
        "2022-05-31", "--tile-size-m", "300", "--workers", "1", "--no-progress"]  # fmt: skip


def test_two_identical_runs_at_once_one_runs_the_other_is_refused(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_URL

    from pipelines.demo.stac_servers import load_static_catalog
    from pipelines.level3 import completion_records, read_definition

    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": PREFECT_API_URL.value()}  # fmt: skip
    command = [sys.executable, "-m", "flows.cli", *DEMO, "--out-dir", str(out)]
    runs = [subprocess.Popen(command, cwd=REPO_ROOT, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT) for _ in range(2)]  # fmt: skip
    started = time.monotonic()
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 2], f"exit codes {codes}:\n" + "\n---\n".join(outputs)
    refused = outputs[[run.returncode for run in runs].index(2)]
    errors = [line for line in refused.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "in use by another tamrf run" in errors[0], refused
    assert "Traceback" not in refused
    # The product of the run that went on is whole: every asset its catalog names exists.
    catalog = out / "simulated" / "stac" / "catalog.json"
    content = load_static_catalog(catalog)
    hrefs = [a["href"] for item in content.items for a in item["assets"].values()]
    missing = [h for h in hrefs if not os.path.isfile(h)]
    assert hrefs and not missing, f"{len(missing)} of {len(hrefs)} assets missing"
    assert not list(out.glob(".*incomplete*")) and not list(out.glob("simulated/.*incomplete*"))
    summary = json.loads((out / "run-summary.json").read_text())
    store = summary["level3"]["store"]
    assert set(completion_records(store)) == set(read_definition(store).tile_ids)
    # A later run reuses the product and finds every tile complete.
    again = tamrf([*DEMO, "--out-dir", str(out)])
    assert again.exit_code == 0, again.output
    level3 = json.loads((out / "run-summary.json").read_text())["level3"]
    assert level3["produced_now"] == [] and sorted(level3["skipped"]) == sorted(level3["tiles"])
    assert time.monotonic() - started < 600
