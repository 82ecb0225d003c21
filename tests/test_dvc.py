"""DVC wraps the workflow: `dvc repro` records the tiny study's stages, a second run does nothing, and
each stage depends on every file its jobs run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO
from tests.imports import import_closure
from tests.workflow_copy import copy_run, run, tiny_config


@pytest.mark.slow
def test_dvc_repro_tiny(tiny_study, tmp_path):
    """`dvc repro` over a finished Snakemake run: every stage's Snakemake skips the jobs that are done
    (the session's tiny study: running it again here would only repeat Snakemake's work), rebuilds the
    stamps and the report it is given to rebuild, and DVC records it all; a second `dvc repro` does nothing."""
    work = copy_run(tiny_study, tmp_path / "wf")
    shutil.rmtree(work / "results/report")
    (work / "params.yaml").write_text(yaml.safe_dump(tiny_config(work), sort_keys=False))
    run(work, "dvc", "init", "--no-scm", "-q")
    first = run(work, "dvc", "repro", timeout=1200)
    assert "is empty" not in first.stdout + first.stderr  # stamps list the stage's results
    assert "rule report:" in first.stdout + first.stderr and "rule train:" not in first.stdout + first.stderr
    stamp = (work / "results/models.stamp").read_text().splitlines()
    assert stamp and all(len(line.split("  ")[0]) == 64 for line in stamp)
    metrics = json.loads((work / "results/report/metrics.json").read_text())
    assert "acc/baseline" in metrics["mnist5k"]
    again = run(work, "dvc", "repro")
    assert "up to date" in again.stdout + again.stderr
    shown = run(work, "dvc", "metrics", "show")
    assert "acc/baseline" in shown.stdout


def stage_scripts(rule_files: list[str]) -> list[Path]:
    """The scripts run by the rules of these rule files, and what every job imports (the plan)."""
    scripts = [REPO / "src/tokencert/config/__init__.py"]
    for name in rule_files:
        for script in re.findall(r'script:\s*"\.\./(scripts/[\w.]+)"', (REPO / name).read_text()):
            scripts.append(REPO / script)
    return scripts


def test_every_dvc_stage_depends_on_its_whole_import_closure():
    """Editing any file a stage's jobs run (script, package module, rule, schema) makes `dvc repro` rerun it."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        deps = [REPO / d for d in stage["deps"]]
        covered = lambda path: any(path == d or d in path.parents for d in deps)  # noqa: E731
        rule_files = [d for d in stage["deps"] if d.startswith("rules/")]
        assert rule_files, f"stage {name} names no rule file"
        needed = {REPO / "Snakefile", REPO / "rules/common.smk", REPO / "src/tokencert/params.schema.yaml"}
        needed |= {REPO / r for r in rule_files} | set(stage_scripts(rule_files))
        needed |= import_closure(stage_scripts(rule_files))
        missing = sorted(str(p.relative_to(REPO)) for p in needed if not covered(p))
        assert not missing, f"dvc.yaml stage {name} does not depend on {missing}"


def test_the_import_closure_finds_indirect_imports():
    closure = {str(p.relative_to(REPO)) for p in import_closure([REPO / "scripts/certify.py"])}
    assert {"src/tokencert/certify.py", "src/tokencert/vocab/quantize.py", "src/tokencert/tokens.py",
            "src/tokencert/data/store.py", "src/tokencert/io.py", "src/tokencert/units.py"} <= closure
    assert "src/tokencert/report/document.py" not in closure
