"""Outputs are written atomically and with the user's umask; the report PDF appears only when complete."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from tokencert.io import write_json, write_text
from tokencert.report import document


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "metrics.json", {"a": 1})
        write_text(tmp_path / "table.tex", "x")
    finally:
        os.umask(old)
    for name in ("metrics.json", "table.tex"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


MINIMAL = r"\documentclass{article}\begin{document}ok\end{document}"


def test_an_interrupted_pdf_build_leaves_nothing_behind(tmp_path, monkeypatch):
    tex = tmp_path / "report.tex"
    tex.write_text(MINIMAL)
    monkeypatch.setattr(document.shutil, "which", lambda _: "/usr/bin/latexmk")

    def killed(cmd, cwd, **kwargs):
        outdir = next(a.split("=", 1)[1] for a in cmd if a.startswith("-outdir="))
        (cwd / outdir / "report.pdf").write_bytes(b"%PDF-1.5 half")  # what latexmk had written so far
        raise KeyboardInterrupt

    monkeypatch.setattr(document.subprocess, "run", killed)
    with pytest.raises(KeyboardInterrupt):
        document.compile_pdf(tex)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.tex"]


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed")
def test_the_pdf_is_built_aside_and_moved_into_place(tmp_path):
    tex = tmp_path / "report.tex"
    tex.write_text(MINIMAL)
    pdf = document.compile_pdf(tex)
    assert pdf.read_bytes()[:5] == b"%PDF-" and b"%%EOF" in pdf.read_bytes()[-64:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf", "report.tex"]  # no .aux, .log, build dir
    tex.write_text(r"\documentclass{article}\begin{document}\undefinedmacro\end{document}")
    with pytest.raises(RuntimeError, match="latexmk failed"):
        document.compile_pdf(tex)
    assert pdf.read_bytes()[:5] == b"%PDF-"  # the earlier complete PDF stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf", "report.tex"]
