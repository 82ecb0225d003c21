"""The package's imports run one way: data -> tokens -> vocab -> certify -> models/train ->
smoothing/attacks/exact -> report, with the plan and plumbing modules below everything."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib

from tests.helpers import REPO
from tests.imports import module_imports, package_modules

# Layer of each top-level part of tokencert; a module may import only from its own layer or below.
LAYERS = {
    "study": 0, "io": 0, "device": 0, "units": 0, "runtime": 0, "config": 0,
    # the certificate family's registry is a plan fact; its implementations ("certificates.*") are layer 6
    "certificates": 0, "plugins": 0, "provenance": 0, "outcomes": 0,
    "data": 1,
    "tokens": 2,
    "vocab": 3,
    "certify": 4, "flips": 4, "cells": 4,
    "models": 5, "train": 5, "objectives": 5, "setcert": 5, "lipschitz": 5,
    "exact": 6, "certacc": 6, "external": 6, "smoothing": 6, "evaluation": 6, "attacks": 6, "flipsearch": 6,
    "exactflip": 6,
    "certificates.*": 6,  # every implementation of the family (a new one adds no line here)
    "report": 7,
}


def layer(module: str) -> int:
    parts = module.split(".")[1:]
    part = f"{parts[0]}.*" if len(parts) > 1 and f"{parts[0]}.*" in LAYERS else (parts[0] if parts else "")
    assert part in LAYERS, f"{module}: add its part '{part}' to LAYERS (which stage does it belong to?)"
    return LAYERS[part]


def graph() -> dict[str, set[str]]:
    return {name: module_imports(path) - {name} for name, path in package_modules().items() if name != "tokencert"}


def test_imports_never_run_backwards():
    backwards = [f"{m} -> {i}" for m, imports in graph().items() for i in imports if i != "tokencert"
                 and layer(i) > layer(m)]
    assert not backwards, backwards


def test_the_plumbing_layer_imports_only_itself():
    assert all(layer(i) == 0 for m, imports in graph().items() if layer(m) == 0 for i in imports if i != "tokencert")


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            # a package's __init__ re-exporting its modules is not a cycle with them
            if nxt == "tokencert" or node.startswith(nxt + "."):
                continue
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node, [])



def test_package_data_is_declared_and_read_from_the_package():
    """`pip install .` (not only an editable install) ships the schema and the templates."""
    src = REPO / "src" / "tokencert"
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tokencert"]
    data = [p.relative_to(src).as_posix() for p in src.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in data), (data, patterns)
    climbing = [p for p in src.rglob("*.py") if "parents[" in p.read_text()]
    assert not climbing, f"paths that climb out of the package: {climbing}"


def test_the_code_hash_is_the_same_in_every_process_and_follows_the_imports(tmp_path):
    """A job's code hash does not depend on the process (set order, hash seeds) and changes exactly when
    a module its script imports changes."""
    import os
    import subprocess
    import sys

    script = tmp_path / "certify.py"  # named like a package module, as the workflow's scripts are
    script.write_text("from tokencert.certify import certify_dataset\n")
    run = [sys.executable, "-c", f"from tokencert.provenance import code_hash; print(code_hash({str(script)!r}))"]
    hashes = {subprocess.run(run, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": s})
              .stdout for s in ("0", "1", "2", "3")}
    assert len(hashes) == 1
    from tokencert.provenance import import_closure

    closure = {p.name for p in import_closure([script])}
    assert "certify.py" in closure and "tables.py" not in closure and "geometry.py" not in closure


def test_every_dependency_is_pinned_in_the_constraints_file():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    names = {re.split(r"[<>=!\[ ;]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in wanted}
    pinned = dict(line.lower().split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert names <= set(pinned), sorted(names - set(pinned))
    assert pinned["torch"] == "2.14.1" and pinned["torchvision"] == "0.29.1"
    assert "-c constraints.txt" in (REPO / "README.md").read_text() and "-c constraints.txt" in \
        (REPO / ".ci/run").read_text()


def test_the_workflow_starts_without_the_evaluation_libraries():
    """Every Snakemake start (each dry run, each cluster job's) imports what the rules import: the plan and
    the report's table names, not scipy or matplotlib (about a second each time)."""
    imported = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        imported |= set(re.findall(r"^(?:from|import) (tokencert[\w.]*)", path.read_text(), re.M))
    code = "import sys\n" + "".join(f"import {m}\n" for m in sorted(imported)) + (
        "print(sorted(m for m in ('scipy.stats', 'scipy.optimize', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "tokencert.report.outputs" in imported and proc.stdout.strip() == "[]", (sorted(imported), proc.stdout)
