"""Copy the workflow (not results) into a temporary directory to run it there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import REPO
from tokencert.config import deep_merge

WORKFLOW_FILES = ["Snakefile", "params.yaml", "dvc.yaml"]
WORKFLOW_DIRS = ["rules", "scripts", "config", "report", "envs", "profiles"]


def copy_workflow(dest: Path, with_sources: bool = False) -> Path:
    """Copy the files a workflow run needs into ``dest`` (and ``src/`` for DVC's deps); return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_DIRS + (["src"] if with_sources else []):
        if (REPO / name).exists():
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
                            dirs_exist_ok=True)
    for name in WORKFLOW_FILES:
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    return dest


def environment(workdir: Path) -> dict[str, str]:
    """The test's environment for a workflow copy: a copy with ``src/`` runs its own package."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    if (workdir / "src" / "tokencert").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(workdir / "src"), env.get("PYTHONPATH")]))
    return env


def run(workdir: Path, *cmd: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command of this interpreter's environment in ``workdir``; fail with its output."""
    exe = Path(sys.executable).with_name(cmd[0])
    proc = subprocess.run([str(exe), *cmd[1:]], cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=environment(workdir))
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run snakemake (of this interpreter's environment) in ``workdir``."""
    exe = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        [str(exe), *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=environment(workdir)
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def copy_run(run_dir: Path, dest: Path) -> Path:
    """Copy a finished workflow run (results, Snakemake's records, modification times) into ``dest``."""
    shutil.copytree(run_dir, dest, symlinks=True)
    return dest


def tiny_config(work: Path) -> dict:
    """``params.yaml`` with ``config/tiny.yaml`` merged over it, as Snakemake stacks them."""
    return deep_merge(yaml.safe_load((work / "params.yaml").read_text()),
                      yaml.safe_load((work / "config/tiny.yaml").read_text()))
