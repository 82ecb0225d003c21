"""DVC wraps the workflow: `dvc repro` runs the tiny study, a second run does nothing."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.workflow_copy import copy_workflow, run
from tokencert.config import deep_merge


@pytest.mark.slow
def test_dvc_repro_tiny(tmp_path):
    work = copy_workflow(tmp_path / "wf", with_sources=True)
    params = deep_merge(yaml.safe_load((work / "params.yaml").read_text()),
                        yaml.safe_load((work / "config/tiny.yaml").read_text()))
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(work, "dvc", "init", "--no-scm", "-q")
    run(work, "dvc", "repro", timeout=1200)
    metrics = json.loads((work / "results/report/metrics.json").read_text())
    assert "acc/baseline" in metrics["mnist5k"]
    again = run(work, "dvc", "repro")
    assert "up to date" in again.stdout + again.stderr
    shown = run(work, "dvc", "metrics", "show")
    assert "acc/baseline" in shown.stdout
