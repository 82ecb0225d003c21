"""Copy the workflow (not results) into a temporary directory to run it there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

WORKFLOW_FILES = ["Snakefile", "params.yaml", "dvc.yaml"]
WORKFLOW_DIRS = ["rules", "scripts", "schemas", "config", "report", "envs", "profiles"]


def copy_workflow(dest: Path) -> Path:
    """Copy the files a workflow run needs into ``dest``; return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    for name in WORKFLOW_DIRS:
        if (REPO / name).exists():
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run snakemake (of this interpreter's environment) in ``workdir``."""
    exe = Path(sys.executable).with_name("snakemake")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [str(exe), *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc
