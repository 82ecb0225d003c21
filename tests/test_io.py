"""Outputs are written atomically and with the user's umask; the report PDF appears only when complete."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
import torch

from tokencert.io import load_torch, read_columns, save_torch, stable_sha256, write_columns, write_json, write_text
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
    # no .aux, no build folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.log", "report.pdf", "report.tex"]
    tex.write_text(r"\documentclass{article}\begin{document}\undefinedmacro\end{document}")
    with pytest.raises(RuntimeError, match="latexmk failed"):
        document.compile_pdf(tex)
    assert pdf.read_bytes()[:5] == b"%PDF-"  # the earlier complete PDF stays, with its log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.log", "report.pdf", "report.tex"]


def test_equal_tensors_are_equal_bytes_whatever_the_temporary_name(tmp_path):
    obj = {"w": torch.arange(6, dtype=torch.float64).view(2, 3), "meta": {"name": "x"}}
    save_torch(tmp_path / "a.pt", obj)
    save_torch(tmp_path / "b" / "a.pt", obj)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b" / "a.pt").read_bytes()
    assert torch.equal(load_torch(tmp_path / "a.pt")["w"], obj["w"])


def test_a_killed_writer_leaves_no_temporary_file_after_the_next_write(tmp_path):
    (tmp_path / ".r.json.k1ll3d.tmp").write_text("half")
    (tmp_path / ".other.json.x.tmp").write_text("someone else's")
    write_json(tmp_path / "r.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.x.tmp", "r.json"]


def test_stage_stamps_hash_json_results_without_their_wall_clock_fields(tmp_path):
    write_json(tmp_path / "a.json", {"acc": 0.5, "seconds_per_image": 1.0, "inner": [{"time": 3, "n": 1}]})
    write_json(tmp_path / "b.json", {"acc": 0.5, "seconds_per_image": 2.0, "inner": [{"time": 4, "n": 1}]})
    write_json(tmp_path / "c.json", {"acc": 0.6, "seconds_per_image": 1.0, "inner": [{"time": 3, "n": 1}]})
    assert stable_sha256(tmp_path / "a.json") == stable_sha256(tmp_path / "b.json")
    assert stable_sha256(tmp_path / "a.json") != stable_sha256(tmp_path / "c.json")


def test_columns_round_trip_as_pandas_reads_them(tmp_path):
    """The per-sample CSVs (csv module, no pandas in the jobs) read back with the report's pandas unchanged."""
    pd = pytest.importorskip("pandas")
    columns = {"idx": [3, 1], "certified_radius": [0.1, float("inf")], "correct": [True, False], "norm": [2.5e-17, 1.0]}
    write_columns(tmp_path / "a.csv", columns)
    assert read_columns(tmp_path / "a.csv") == {k: [str(v) for v in vals] for k, vals in columns.items()}
    frame = pd.read_csv(tmp_path / "a.csv")
    assert {k: frame[k].tolist() for k in frame.columns} == columns
