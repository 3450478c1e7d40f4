"""``python -m pipelines.training.worker REQUEST.json``: one training process.

``tamrf train --processes N`` starts N of them through ``torchrun`` (one per GPU, or gloo
processes on a CPU machine); each joins the DDP group and runs
:func:`pipelines.training.loop.train` with the request read from the JSON file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipelines.training.loop import TrainingRequest, train
from tamrf_xr.model import ModelConfig


def request_from_json(path: str | Path) -> TrainingRequest:
    """The request ``TrainingRequest.to_json`` wrote."""
    raw = json.loads(Path(path).read_text())
    raw["model"] = ModelConfig(**raw["model"])
    for key in ("store", "out_dir", "init_checkpoint", "lpips_weights"):
        if raw.get(key) is not None:
            raw[key] = Path(raw[key])
    return TrainingRequest(**raw)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pipelines.training.worker REQUEST.json", file=sys.stderr)
        return 2
    summary = train(request_from_json(argv[0]))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
