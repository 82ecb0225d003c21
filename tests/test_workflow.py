"""End to end: the whole workflow on the tiny config, in a temporary copy."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil

import matplotlib.pyplot as plt
import pytest
import yaml

from tests.figure_checks import assert_legible
from tests.helpers import make_imagefolder, make_tar
from tests.workflow_copy import copy_run, copy_workflow, snakemake, tiny_config
from tokencert.certificates import CERTIFICATES
from tokencert.config import resolve_plan
from tokencert.report import figures
from tokencert.report.collect import collect
from tokencert.report.document import table_font_sizes
from tokencert.study import FIGURE_KINDS

pytestmark = pytest.mark.slow  # every test here runs Snakemake


@pytest.fixture(scope="module")
def tiny_run(tiny_study, tmp_path_factory):
    """A copy of the session's tiny study, for this module's tests to edit and rerun."""
    return copy_run(tiny_study, tmp_path_factory.mktemp("wf") / "work")


def test_tiny_workflow_runs_end_to_end(tiny_run):
    work = tiny_run
    manifest = json.loads((work / "data/mnist5k/manifest.json").read_text())
    assert manifest["counts"] == {"train": 600, "test": 100}
    for rule_dir in ("logs/data", "benchmarks/rules/data"):
        assert any((work / rule_dir).iterdir()), rule_dir
    produced = {p.relative_to(work).as_posix() for p in (work / "results").rglob("*") if p.is_file()}
    assert produced, "no results"
    assert not [p for p in produced if p.endswith(".tmp")], "temporary files left behind"
    jobs = [p.read_text() for p in (work / "logs").rglob("*.log")]
    assert jobs and all("(OMP_WAIT_POLICY=PASSIVE)" in text for text in jobs if "device=" in text)  # the Snakefile's


def test_tiny_workflow_builds_the_report(tiny_run):
    work = tiny_run
    report = work / "results/report"
    for name in ("tables/main-mnist5k.tex", "tables/landscape-mnist5k-radii.tex", "tables/vocab.tex",
                 "tables/landscape-mnist5k-evaluation.tex", "tables/cost.tex", "report.tex",
                 "metrics.json",
                 "figures/mnist5k-certified.png", "figures/mnist5k-robust.pdf", "figures/mnist5k-examples.png"):
        assert (report / name).is_file(), name
    tex = (report / "report.tex").read_text()
    assert "Run settings" in tex and "L2 in [0,1] pixel space" in tex
    assert "Reproducing the study" not in tex and "1 restarts" not in tex  # no section it lacks, no "1 restarts"
    captions = re.findall(r"\\captionof\{figure\}\{(.*)\}", tex)
    assert len(captions) == len(FIGURE_KINDS)
    assert all("Perturbation sizes in this figure: L2 in [0,1] pixel space" in c and len(c) > 200 for c in captions)
    res, config = work / "results/mnist5k", tiny_config(work)
    files = {"manifests": [work / "data/mnist5k/manifest.json"], "finals": sorted(res.glob("models/*/final.json")),
             **{g: sorted(res.glob(f"{g}/*.json")) for g in ("vocab", "certify")},
             "certificates": [p for c in CERTIFICATES.values() for p in sorted(res.glob(f"{c.folder}/*.json"))],
             "brackets": sorted(res.glob("exact/*.csv")) + sorted(res.glob("lipcert/*.csv")),
             "smoothing": sorted(res.glob("smooth/*/*.json")), "attacks": sorted(res.glob("attacks/*/*.json")),
             "examples": [res / "vocab/gauss.pt", res / "certify/gauss.pt", work / "data/mnist5k/test.pt"]}
    (d,) = collect(resolve_plan(config), files)
    for kind in FIGURE_KINDS:  # the tiny study's own figures, drawn again and measured
        fig = figures.make(kind, d, resolve_plan(config))
        assert_legible(fig, kind)
        plt.close(fig)
    main = (report / "tables/main-mnist5k.tex").read_text()
    assert r"Worst-case acc.\\@ $\varepsilon$ = 4" in main and r"$R_0$ cert. acc.\\@ r = 0.05" in main
    assert "mnist5k" not in main  # the PDF's tables are per dataset: its name and units are the heading
    assert "eps = 4" in (report / "tables/main.md").read_text()
    if shutil.which("latexmk") is None:
        assert not os.environ.get("CI"), "CI must install LaTeX and build the PDF"
        pytest.skip("latexmk not installed: the PDF is not built")
    assert (report / "report.pdf").read_bytes()[:5] == b"%PDF-"
    fonts = table_font_sizes((report / "report.log").read_text(errors="replace"))  # every table readable in print
    assert set(fonts) == {"main-mnist5k", "landscape-mnist5k-radii", "landscape-mnist5k-evaluation", "vocab", "cost",
                          "published"}
    assert r"\section*{Against the literature}" in (report / "report.tex").read_text()
    assert min(fonts.values()) >= 7.0, fonts
    snakemake(work, "--report", "report.html", "--configfile", "config/tiny.yaml")
    html = (work / "report.html").read_text(errors="replace")
    assert "mnist5k-certified.png" in html
    embedded = {m.group(1): base64.b64decode(m.group(2)).decode() for m in re.finditer(
        r"data:text/html;charset=utf8;filename=(\w+\.html);base64,([A-Za-z0-9+/=]+)", html)}
    assert set(embedded) == {"main.html", "landscape.html", "vocab.html", "cost.html", "published.html"}  # not LaTeX
    assert "test: a smoothing ACR" in embedded["published.html"]
    landscape = embedded["landscape.html"]  # every classifier, the defenses of params.yaml included
    assert all(m in landscape for m in ("pgd-at", "trades", "discrete-gauss-noise-0.5", "noise-0.5", "baseline"))
    assert all("<table>" in page and "\\toprule" not in page for page in embedded.values())


def test_tiny_attacks_run_as_a_cascade_whose_last_attack_is_the_worst_case(tiny_run):
    """The tiny config's cascade: each attack starts from the one before it (black-box last), its outcome is
    cumulative, so the last equals the worst case; each also ran alone on the check images, which the report
    says."""
    res = tiny_run / "results/mnist5k/attacks"
    config = tiny_config(tiny_run)
    for model_dir in sorted(res.iterdir()):
        runs = {p.stem: json.loads(p.read_text()) for p in model_dir.glob("*.json")}
        order = runs["worst"]["cascade"]["order"]
        assert sorted(order) == sorted(set(runs) - {"worst"}) and order[-1] == "square", model_dir.name
        assert [runs[a]["cascade"]["after"] for a in order] == [None, *order[:-1]]
        assert runs[order[-1]]["robust_accuracy"] == runs["worst"]["robust_accuracy"]
        for earlier, later in zip(order, order[1:]):  # cumulative: never above the attack before
            assert all(b <= a for a, b in zip(runs[earlier]["robust_accuracy"], runs[later]["robust_accuracy"]))
        assert all(runs[a]["alone"]["n_images"] == min(config["attacks"]["check_images"], 20) for a in order)
    assert "the attacks ran as a cascade" in (tiny_run / "results/report/report.tex").read_text()


def test_rerun_with_nothing_changed_does_nothing(tiny_run):
    work = tiny_run
    proc = snakemake(work, "-n", "--configfile", "config/tiny.yaml", "--resources", "gpu=0")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def reversed_keys(value):
    """``value`` with every dict's keys in reverse order, at every depth."""
    if isinstance(value, dict):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))}
    return [reversed_keys(v) for v in value] if isinstance(value, list) else value


def test_the_same_parameters_in_another_key_order_rerun_nothing_but_the_report(tiny_run):
    """Snakemake records params by repr: a params.yaml rewritten in another key order (a merged config,
    `dvc exp run -S`) must not rerun the study (the report, which states the settings in their order, may)."""
    work = tiny_run
    path = work / "params.yaml"
    original = path.read_text()
    try:
        path.write_text(yaml.safe_dump(reversed_keys(tiny_config(work)), sort_keys=False))
        proc = snakemake(work, "-n", "--resources", "gpu=0")
    finally:
        path.write_text(original)
    assert {rule for rule, _ in planned_jobs(proc.stdout + proc.stderr)} <= {"report", "all"}


def planned_jobs(out: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans."""
    jobs, rule = set(), None
    for line in out.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
            jobs.add((rule, ""))
        elif rule and line.strip().startswith("wildcards:"):
            jobs.discard((rule, ""))
            jobs.add((rule, line.split(":", 1)[1].strip()))
            rule = None
    return jobs


def dry_run_after_editing(work, module: str, *args: str) -> set[tuple[str, str]]:
    """The jobs planned after appending a comment to a package module (restored afterwards)."""
    path = work / "src/tokencert" / module
    original = path.read_text()
    try:
        path.write_text(original + "\n# edited\n")
        proc = snakemake(work, "-n", "--configfile", "config/tiny.yaml", "--resources", "gpu=0", *args)
    finally:
        path.write_text(original)
    return planned_jobs(proc.stdout + proc.stderr)


def test_editing_a_module_reruns_exactly_the_jobs_whose_code_runs_it(tiny_run):
    work = tiny_run
    assert dry_run_after_editing(work, "report/tables.py") == {("report", ""), ("all", "")}
    jobs = dry_run_after_editing(work, "setcert/geometry.py")
    rules = {rule for rule, _ in jobs}
    assert rules == {"certificate", "train", "attack", "attack_worst", "report", "all"}, rules
    # the flip-set certificates, and flipset's training (its loss is the flip-set bound), with what follows from it
    assert {w for rule, w in jobs if rule == "train"} == {"dataset=mnist5k, model=flipset"}
    certified = {w for rule, w in jobs if rule == "certificate"}
    assert {w for w in certified if "cert=setcert" not in w and "cert=exactflip" not in w} == {
        f"dataset=mnist5k, cert={c}, model=flipset" for c in ("certacc", "exact")}
    assert any("cert=setcert, model=discrete-gauss" in w for w in certified)
    assert all("model=flipset" in w for rule, w in jobs if rule in ("attack", "attack_worst"))
    assert "Nothing to be done" in snakemake(work, "-n", "--configfile", "config/tiny.yaml").stdout


def test_a_report_setting_reruns_the_report_only(tiny_run):
    work = tiny_run
    for value in ("report={cert_radius: 0.25}", "report={example_images: 2}"):
        proc = snakemake(work, "-n", "--configfile", "config/tiny.yaml", "--resources", "gpu=0", "--config", value)
        assert planned_jobs(proc.stdout + proc.stderr) == {("report", ""), ("all", "")}, value


def test_evaluation_settings_of_a_dataset_do_not_rebuild_its_data(tiny_run):
    work = tiny_run
    (work / "units.yaml").write_text("datasets:\n  mnist5k:\n    units: normalized\n    training: {epochs: 1}\n")
    proc = snakemake(work, "-n", "--configfile", "config/tiny.yaml", "units.yaml", "--resources", "gpu=0")
    out = proc.stdout + proc.stderr
    assert "rule train:" in out and "rule certify:" in out  # units and training do change results ...
    assert "rule data:" not in out  # ... but not the images


def test_a_deleted_result_is_rebuilt(tiny_run):
    work = tiny_run
    (work / "results/mnist5k/attacks/discrete-gauss/pgd.json").unlink()
    proc = snakemake(work, "-n", "--configfile", "config/tiny.yaml", "--resources", "gpu=0")
    out = proc.stdout + proc.stderr
    assert "rule attack:" in out and "wildcards: dataset=mnist5k, model=discrete-gauss, attack=pgd" in out
    assert "rule report:" in out


def test_the_report_shows_only_what_the_plan_ran(tiny_run):
    """Results of the earlier, larger configuration stay in results/ but not in the report."""
    work = tiny_run
    (work / "less.yaml").write_text("classifiers: {baseline: false}\nattacks: {models: [discrete-gauss]}\n")
    snakemake(work, "--cores", "2", "--configfile", "config/tiny.yaml", "less.yaml", "--resources", "gpu=0")
    assert (work / "results/mnist5k/models/baseline/final.json").is_file()  # still there ...
    metrics = json.loads((work / "results/report/metrics.json").read_text())["mnist5k"]
    assert not [k for k in metrics if "baseline" in k]  # ... but not reported
    assert "worst_acc/discrete-gauss@4" in metrics
    main = (work / "results/report/tables/main.md").read_text()
    assert "Baseline" not in main and "Discrete (gauss)" in main


def test_bad_dataset_fails_cleanly(tmp_path):
    """What only the data job can find fails that job with one line on the console; the log keeps the details."""
    work = copy_workflow(tmp_path / "wf")
    folder = make_imagefolder(tmp_path / "src", size=28)
    (folder / "train" / "cat" / "9.png").write_bytes(b"not a png")  # found when decoded, after start-up
    make_tar(folder, work / "archive.tar.gz")
    (work / "bad.yaml").write_text(
        "datasets:\n  broken:\n    source: imagefolder\n    path: archive.tar.gz\n"
        "    channels: 1\n    image_size: 28\nstudy:\n  datasets: [broken]\n"
    )
    proc = snakemake(work, "--cores", "1", "--configfile", "bad.yaml", "--until", "data", check=False)
    assert proc.returncode != 0
    message = "archive.tar.gz:ds/train/cat/9.png: cannot decode image"
    log = (work / "logs/data/broken.log").read_text()
    assert message in log and "Traceback" in log
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("rule data: DatasetError:")]
    assert message in line and "logs/data/broken.log" in line
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (work / "data/broken").exists() or not any((work / "data/broken").iterdir())


def test_a_wrong_declaration_stops_at_startup_naming_the_key(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    make_tar(make_imagefolder(tmp_path / "src", size=28), work / "archive.tar.gz")
    (work / "mine.yaml").write_text(
        "datasets:\n  mine:\n    source: imagefolder\n    path: archive.tar.gz\n"
        "    channels: 1\n    image_size: 32\nstudy:\n  datasets: [mine]\n"
    )
    proc = snakemake(work, "--cores", "1", "--configfile", "mine.yaml", check=False)
    assert proc.returncode != 0 and not (work / "logs").exists()  # no job ran
    (line,) = [x for x in proc.stderr.splitlines() if "datasets.mine" in x]
    assert line.startswith("datasets.mine.image_size 32: archive.tar.gz:ds/") and "expected 32x32" in line


def test_invalid_params_stop_at_startup(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    (work / "bad.yaml").write_text("patch_size: 0\n")
    proc = snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "patch_size" in proc.stdout + proc.stderr


def test_alias_dataset_is_evaluated_in_its_own_units(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    (work / "twin.yaml").write_text(
        "datasets:\n  twin:\n    source: alias\n    of: mnist5k\n    channels: 1\n    image_size: 28\n"
        "    units: normalized\nstudy:\n  datasets: [mnist5k, twin]\n"
    )
    snakemake(work, "results/twin/certify/gauss.json", "results/mnist5k/certify/gauss.json", "--cores", "2",
              "--configfile", "config/tiny.yaml", "twin.yaml", "--resources", "gpu=0")
    base, twin = (json.loads((work / f"data/{d}/manifest.json").read_text()) for d in ("mnist5k", "twin"))
    assert twin["sha256"] == base["sha256"] and twin["source"] == "alias" and twin["location"] == "mnist5k"
    summaries = {d: json.loads((work / f"results/{d}/certify/gauss.json").read_text()) for d in ("mnist5k", "twin")}
    assert summaries["twin"]["units"] == "normalized" and summaries["mnist5k"]["units"] == "pixel"
