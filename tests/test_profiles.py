"""Execution profiles: the SLURM dry run requests GPUs, memory and runtime for heavy jobs."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO
from tests.workflow_copy import copy_workflow, snakemake

HEAVY = ("train", "smooth", "attack")
LIGHT = ("data", "attack_worst", "report")


def job_resources(dry_run: str) -> dict[str, list[str]]:
    """Rule name -> the 'resources:' lines of its jobs in a dry run."""
    out: dict[str, list[str]] = {}
    rule = None
    for line in dry_run.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif rule and line.strip().startswith("resources:"):
            out.setdefault(rule, []).append(line)
    return out


@pytest.mark.slow  # a Snakemake dry run
def test_slurm_dry_run_requests_gpu_memory_runtime(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, "-n", "--profile", "profiles/slurm", "--configfile", "config/tiny.yaml")
    resources = job_resources(proc.stdout + proc.stderr)
    for rule in HEAVY:
        assert resources.get(rule), f"no {rule} job in the dry run"
        for line in resources[rule]:
            assert "gpu=1" in line and "mem_mb=" in line and "runtime=" in line, (rule, line)
            assert "slurm_partition=" in line and "slurm_account=" in line


def test_light_rules_run_locally():
    snakefile = (REPO / "Snakefile").read_text()
    block = snakefile.split("localrules:", 1)[1].split("\n\n", 1)[0]
    for rule in LIGHT:
        assert re.search(rf"\b{rule}\b", block), rule


@pytest.mark.slow  # a Snakemake dry run
def test_default_profile_dry_run(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, "-n", "--configfile", "config/tiny.yaml")
    assert "profiles/default" in proc.stdout + proc.stderr


@pytest.mark.slow  # a Snakemake dry run
def test_a_run_with_the_placeholder_partition_stops_at_once(tmp_path):
    """A real run (not a dry run) with profiles/slurm's CHANGE_ME values says what to set, runs nothing."""
    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, "--profile", "profiles/slurm", "--configfile", "config/tiny.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [line for line in out.splitlines() if line.startswith("profiles/slurm:")]
    assert lines == ["profiles/slurm: set slurm_partition and slurm_account in profiles/slurm/config.yaml "
                     "(or --default-resources slurm_partition=... slurm_account=...)"]
    assert "submitted" not in out and "Traceback" not in out and not (work / "data").exists()
