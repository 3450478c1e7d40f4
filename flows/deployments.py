"""Checks of the deployments of a ``prefect.yaml`` against their flows' signatures.

``prefect deploy`` accepts a deployment whose parameters lack one its flow requires (the
server validates deployment parameters with the required ones ignored): the mistake shows
only when a run is created, from a schedule at night or a button in the UI. These checks
catch it, and unknown parameters and values of the wrong type, before deploying
(``tamrf deploy-check infra/prefect.yaml``). They read the flows' source (no import of the
flow modules), as Prefect builds the parameter schema it enforces on runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["check_deployments", "deployment_problems"]


def _is_template(value: Any) -> bool:
    """A value Prefect fills in later (``{{ $ENV }}``, ``{{ prefect.variables.x }}``)."""
    return isinstance(value, str) and "{{" in value and "}}" in value


def deployment_problems(deployment: Mapping[str, Any], root: Path) -> list[str]:
    """What is wrong with one deployment of a ``prefect.yaml`` (empty: nothing).

    Args:
        deployment: the deployment's mapping, as in the file.
        root: the directory ``prefect deploy`` runs in (entrypoints are relative to it).
    """
    from prefect.utilities.callables import parameter_schema_from_entrypoint
    from prefect.utilities.schema_tools.validation import validate
    from prefect.utilities.templating import apply_values
    from pydantic_core import to_jsonable_python

    name = deployment.get("name") or "(no name)"
    problems = []
    if not deployment.get("name"):
        problems.append("a deployment has no name: give each deployment a `name:`")
    if not (deployment.get("work_pool") or {}).get("name"):
        problems.append(f"deployment {name!r} has no work pool: give `work_pool: {{name: ...}}` "
                        "(a pool that exists on the server, e.g. a process pool)")  # fmt: skip
    entrypoint = deployment.get("entrypoint") or ""
    path, _, function = entrypoint.rpartition(":")
    if not path or not function:
        return [*problems, f"deployment {name!r}: entrypoint {entrypoint!r} is not "
                           "path/to/file.py:flow_function"]  # fmt: skip
    if not (root / path).is_file():
        return [*problems, f"deployment {name!r}: entrypoint file {path} is not in {root}: run "
                           "from the directory `prefect deploy` runs in (the repository root) or "
                           "fix the entrypoint"]  # fmt: skip
    try:
        schema = parameter_schema_from_entrypoint(f"{root / path}:{function}")
    except Exception as error:  # whatever the parser raises for a missing or odd function
        return [*problems, f"deployment {name!r}: no flow {function!r} in {path} ({error}): "
                           "fix the entrypoint"]  # fmt: skip
    # The environment is applied as `prefect deploy` applies it; what stays a template is
    # filled in later and cannot be checked here.
    parameters = apply_values(dict(deployment.get("parameters") or {}), dict(os.environ),
                              remove_notset=False)  # fmt: skip
    known = schema.properties
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        problems.append(f"deployment {name!r}: unknown parameter(s) {', '.join(unknown)}: "
                        f"{function} takes {', '.join(known)}")  # fmt: skip
    missing = [p for p in schema.required if p not in parameters]
    if missing:
        problems.append(f"deployment {name!r}: missing required parameter(s) "
                        f"{', '.join(missing)} of {function}: give them under `parameters:` "
                        "(prefect deploy accepts the deployment, but every run of it would "
                        "fail)")  # fmt: skip
    # As JSON, as Prefect sends them (YAML dates become ISO strings).
    values = to_jsonable_python({k: v for k, v in parameters.items()
                                 if k in known and not _is_template(v)})  # fmt: skip
    for error in validate(values, schema.model_dump_for_openapi(), ignore_required=True):
        where = ".".join(str(p) for p in error.absolute_path) or "parameters"
        problems.append(f"deployment {name!r}: parameter {where}: {error.message}: give a "
                        f"value of the type {function} declares")  # fmt: skip
    return problems


def check_deployments(prefect_file: str | os.PathLike[str], root: Path | None = None) -> list[str]:
    """Every problem of every deployment of ``prefect_file`` (empty: all deployable).

    Args:
        prefect_file: a ``prefect.yaml``.
        root: where ``prefect deploy`` runs (default: the current directory).

    Raises:
        ValueError: the file cannot be read as a ``prefect.yaml`` with deployments.
    """
    import yaml

    path = Path(prefect_file)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read {path} ({error}): give a prefect.yaml") from None
    deployments = document.get("deployments") if isinstance(document, dict) else None
    if not deployments or not isinstance(deployments, list):
        raise ValueError(f"{path} has no `deployments:` list: give a prefect.yaml with at "
                         "least one deployment")  # fmt: skip
    root = Path.cwd() if root is None else root
    return [p for deployment in deployments for p in deployment_problems(deployment, root)]
