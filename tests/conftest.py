"""The tiny study, run once per test session and copied by every test that needs a finished run."""

from __future__ import annotations

from pathlib import Path

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
