"""The tiny study's jobs through `profiles/slurm` on a real Slurm cluster (.ci/slurm-up starts one).

Skips where no Slurm cluster answers (a laptop); CI starts one, so there it must run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.reproducible import differences
from tests.workflow_copy import copy_workflow, snakemake
from tokencert.certificates import CERTIFICATES

GPU_RULES = {"train", "smooth", "attack", "certificate_certacc", "certificate_exact"}  # R_0, R_2: gpu=1


def partition() -> str | None:
    """The default partition of a running Slurm cluster with a usable node, else None."""
    if shutil.which("sinfo") is None:
        return None
    proc = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=30)
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        name, state = line.split()
        if state.rstrip("*~#") in ("idle", "mixed", "allocated", "completing"):
            return name.rstrip("*")
    return None


def slurm_jobs() -> dict[str, dict[str, str]]:
    """Jobs the controller still knows (``scontrol show job``), by id, as key=value fields."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, timeout=30).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def local_rules() -> set[str]:
    """The rules the Snakefile's ``localrules:`` keeps on the submitting node."""
    block = re.search(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", (REPO / "Snakefile").read_text(), re.M)
    return set(re.findall(r"\w+", block.group(1)))


def targets(local: Path) -> list[str]:
    """One output of every rule the tiny study submits, and of every certificate kind (each its own resources).

    The whole tiny study through Slurm repeats the same few rules some 80 times; these are 28 submitted jobs:
    discrete-gauss's worst case (its 10 attacks and the baseline's 5, the source of `transfer`, with their
    training and vocabulary), one smoothing run, a learned vocabulary (GPU) with its certification, and one
    result per certificate."""
    res = "results/mnist5k"
    certs = []
    for cert in CERTIFICATES.values():  # discrete-gauss's where it has one, else the first classifier's
        found = sorted((local / res / cert.folder).glob("*.json"), key=lambda p: (p.stem != "discrete-gauss", p.stem))
        certs += [found[0].relative_to(local).as_posix()] if found else []
    return [f"{res}/attacks/discrete-gauss/worst.json", f"{res}/smooth/discrete-gauss-noise-0.5/sigma-0.5.json",
            f"{res}/certify/learned.json", *certs]


@pytest.mark.slow
def test_the_tiny_study_runs_through_slurm(tiny_study, tmp_path):
    part = partition()
    if part is None:
        assert not os.environ.get("CI"), "CI must start a Slurm cluster (.ci/slurm-up)"
        pytest.skip("no Slurm cluster is running (start a single-node one with .ci/slurm-up)")
    work = copy_workflow(tmp_path / "slurm", with_sources=True)
    known = set(slurm_jobs())
    proc = snakemake(
        work, *targets(tiny_study), "--profile", "profiles/slurm", "--configfile", "config/tiny.yaml", "--jobs", "4",
        "--default-resources", f"slurm_partition={part}", "slurm_account=ci", "mem_mb=2000", "runtime=30",
        # the CI node has 2 cores: no rule may ask for more, and two one-core jobs share it
        "--set-resources", "train:cpus_per_task=1", "smooth:cpus_per_task=1", "attack:cpus_per_task=1",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "2", timeout=1200,
    )
    out = proc.stdout + proc.stderr
    remote = re.findall(r"^rule (\w+):", out, re.M)
    submitted = {job_id: f for job_id, f in slurm_jobs().items() if job_id not in known}
    rules = [re.match(r"rule_(.+?)_wildcards_", f.get("Comment", "")) for f in submitted.values()]
    # a certificate job's wildcards: dataset, results folder of the certificate, model
    certs = [re.match(r"rule_certificate_wildcards_[^_]+_([A-Za-z0-9]+)_", f.get("Comment", ""))
             for f in submitted.values()]
    assert remote and len(submitted) == len(remote) == out.count("has been submitted with SLURM jobid")
    assert sorted(m.group(1) for m in rules if m) == sorted(remote)  # every non-local job went through sbatch
    local = local_rules()
    assert {"all", "data", "report"} <= local and set(re.findall(r"^localrule (\w+):", out, re.M)) <= local
    # every rule the whole tiny study submits, and every certificate kind, went through Slurm here
    assert set(remote) == {d.name for d in (tiny_study / "benchmarks/rules").iterdir()} - local
    assert {c.group(1) for c in certs if c} == {c.folder for c in CERTIFICATES.values()}
    for fields, match, cert in zip(submitted.values(), rules, certs, strict=True):
        gpus = fields.get("TresPerJob", "") + fields.get("TresPerNode", "")
        assert fields["JobState"] == "COMPLETED", fields
        rule = match.group(1) + (f"_{cert.group(1)}" if cert else "")
        assert ("gpu:1" in gpus) == (rule in GPU_RULES or "vocab" == match.group(1)
                                     and "learned" in fields["Comment"]), fields
    # the same parameters run locally (the session's tiny study): every file identical but the wall-clock fields
    assert not differences(work, tiny_study, within_first=True)
