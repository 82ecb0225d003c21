"""kill -9 of Snakemake leaves no job running: each job watches its Snakemake and exits within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.workflow_copy import copy_workflow, environment


def running_jobs(work: Path) -> list[int]:
    """Processes running one of the workflow copy's job scripts (or their shell)."""
    marker = str(work / ".snakemake" / "scripts").encode()
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes():
                if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX":
                    out.append(int(proc.name))
        except OSError:
            continue
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the watch reads Linux's /proc")
def test_killing_snakemake_leaves_no_job_behind_within_five_seconds(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    exe = Path(sys.executable).with_name("snakemake")
    smk = subprocess.Popen([str(exe), "--cores", "2", "--configfile", "config/tiny.yaml", "--resources", "gpu=0"],
                           cwd=work, env=environment(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        # a training job (tens of seconds) under way, past its start-up
        started = lambda: any("device=" in p.read_text() for p in (work / "logs/train").rglob("*.log"))  # noqa: E731
        while time.time() < deadline and not (started() and running_jobs(work)):
            time.sleep(0.2)
        assert running_jobs(work), "no job started"
    finally:
        os.kill(smk.pid, signal.SIGKILL)  # not reaped yet: a zombie Snakemake counts as gone
    deadline = time.time() + 5
    while time.time() < deadline and running_jobs(work):
        time.sleep(0.2)
    left = running_jobs(work)
    smk.wait()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"jobs still running 5 s after Snakemake was killed: {left}"
