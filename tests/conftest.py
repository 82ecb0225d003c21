"""The tiny study, run once per test session and copied by every test that needs a finished run."""

from __future__ import annotations

import os

# OpenMP reads it when torch loads, so before any test module imports torch (as the Snakefile does for jobs):
# with spinning workers the quick tier had not finished after 900 s beside a 2-core workflow (at nice 5);
# with passive ones it took 69 s beside one job (~60 s idle)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest

from tests.workflow_copy import copy_workflow, snakemake


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """A finished run of the tiny study (sources included: its jobs import its own package).

    Never changed by a test: those that edit, delete or rerun work on a copy (``copy_run``).
    """
    work = copy_workflow(tmp_path_factory.mktemp("tiny-study"), with_sources=True)
    snakemake(work, "--cores", "2", "--configfile", "config/tiny.yaml", "--resources", "gpu=0")
    return work
