"""The GPU projection (benchmarks/project_gpu.py): the latency per network pass of each input kind recovered
from jobs whose times follow the model exactly, the timed jobs' calibration, passes scaled to the plan's
images, unsampled classifiers, the sample config."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
project_gpu = pytest.importorskip("project_gpu")


def summary(forward: float, backward: float, calls: int, images: int = 10) -> dict:
    return {"n_images": images, "work": {"forward_images": forward * images, "backward_images": backward * images,
                                         "forward_calls": calls // 2, "backward_calls": calls - calls // 2}}


def recipes() -> dict:
    from tokencert.config.recipes import Recipe

    return {"baseline": Recipe("baseline", None, {}), "discrete-gauss": Recipe("discrete-gauss", "gauss", {})}


def timed(work: dict, latency: dict[str, float]) -> dict:
    """Each job's time by the model exactly: start, passes x its input kind's latency, forward and twice as
    costly backward images (tokenflip: one image at a time, the 10 sampled images' passes 100 times)."""
    images, rate = project_gpu.MEASURED_IMAGES, project_gpu.RATES["mnist"]["forward_per_s"]
    loops = {"tokenflip": images / 10}
    return {(m, a): project_gpu.OVERHEAD_S + (f + 2 * b) * images / rate
            + calls * loops.get(a, 1) * latency["pixel" if m == "baseline" else "token"]
            for (m, a), (f, b, calls) in work.items()}


def test_fit_recovers_the_latency_of_each_input_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs timed exactly by the model: the fit returns each kind's latency and calibrations of 1; the
    loop over images (tokenflip) is left out of the fit and calibrated alone."""
    latency = {"pixel": 2e-3, "token": 5e-3}
    work = {("baseline", "pgd"): (900.0, 850.0, 1000), ("baseline", "apgd-ce"): (200.0, 180.0, 400),
            ("discrete-gauss", "bpda"): (300.0, 290.0, 800), ("discrete-gauss", "sspgd"): (700.0, 690.0, 2000),
            ("discrete-gauss", "tokenflip"): (50.0, 0.0, 300)}
    measured = timed(work, latency)
    measured[("discrete-gauss", "tokenflip")] *= 3  # host work per image the passes do not show
    monkeypatch.setitem(project_gpu.MEASURED, "mnist", measured)
    fit = project_gpu.fit_latency({key: summary(*w) for key, w in work.items()}, "mnist", recipes())
    assert fit["latency_s"] == pytest.approx(latency, rel=1e-9)
    calibration = {k: j["calibration"] for k, j in fit["jobs"].items()}
    assert calibration.pop("discrete-gauss / tokenflip") == pytest.approx(3.0)
    assert all(c == pytest.approx(1.0, rel=1e-9) for c in calibration.values())


def test_a_timed_job_projects_to_its_measured_time_and_others_scale_by_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timed classifier's own work gives the measured seconds; a classifier of the same kind with more
    work costs more, by the same calibration; an untimed attack takes the kind's latency alone; a kind with
    no timed job takes the other's latency."""
    work = {("baseline", "pgd"): (900.0, 850.0, 1000), ("baseline", "apgd-ce"): (200.0, 180.0, 400)}
    measured = timed(work, {"pixel": 2e-3, "token": 0.0})
    measured[("baseline", "pgd")] *= 1.5
    monkeypatch.setitem(project_gpu.MEASURED, "mnist", measured)
    fit = project_gpu.fit_latency({key: summary(*w) for key, w in work.items()}, "mnist", recipes())
    assert fit["latency_s"]["token"] == fit["latency_s"]["pixel"]
    rate, images = project_gpu.RATES["mnist"]["forward_per_s"], project_gpu.MEASURED_IMAGES
    own = project_gpu.work_of(summary(*work[("baseline", "pgd")]))
    pgd_s = measured[("baseline", "pgd")]
    assert project_gpu.job_seconds(fit, own, "pgd", "pixel", images, rate) == pytest.approx(pgd_s)
    more = (own[0] * 2, own[1] * 2, own[2] * 2, own[3])
    ratio = project_gpu.job_seconds(fit, more, "pgd", "pixel", images, rate) / pgd_s
    assert ratio == pytest.approx(project_gpu.attack_seconds(more, "pgd", images, fit["latency_s"]["pixel"], rate)
                                  / project_gpu.attack_seconds(own, "pgd", images, fit["latency_s"]["pixel"], rate))
    assert project_gpu.job_seconds(fit, own, "square", "token", images, rate) == \
        pytest.approx(project_gpu.attack_seconds(own, "square", images, fit["latency_s"]["pixel"], rate))


def test_fit_needs_a_timed_job_in_the_sample() -> None:
    with pytest.raises(SystemExit, match="none of the GPU-timed attack jobs"):
        project_gpu.fit_latency({("baseline", "square"): summary(1.0, 1.0, 10)}, "mnist", recipes())


def test_the_fit_refuses_a_cascade_s_work() -> None:
    """The GPU timed each job alone: a cascaded sample's work for them (fewer images) is refused."""
    alone = {("baseline", "pgd"): summary(1.0, 1.0, 10), ("baseline", "square"): summary(1.0, 0.0, 10)}
    assert project_gpu.alone(alone) is alone
    cascaded = {**alone, ("baseline", "pgd"): {**summary(0.5, 0.5, 10), "cascade": {"after": "fab"}}}
    with pytest.raises(SystemExit, match="without attacks.cascade"):
        project_gpu.alone(cascaded)


def test_passes_scale_with_the_loops_over_images_only() -> None:
    assert project_gpu.scaled_passes("pgd", 500.0, 10, 1000) == 500.0
    assert project_gpu.scaled_passes("tokenflip", 40.0, 10, 1000) == 40.0 * 100
    assert project_gpu.scaled_passes("tokensearch", 40.0, 10, 1000) == 40.0 * 20
    assert project_gpu.scaled_passes("tokensearch", 40.0, 60, 1000) == 40.0 * 20 / 2


def test_a_chunked_search_counts_the_gpu_s_passes_of_a_full_loop() -> None:
    """tokensearch sent its candidates 64 at a time on the sample's CPU: on a GPU a step of a full loop (50
    images, 60 candidates each: 3,000) takes 3 forward passes of 1,024 and its gradient pass, whether the sample
    had one short loop or two full ones; other attacks keep the sample's passes."""
    assert project_gpu.gpu_passes(100 * 10 * 60, 100, 10, 50) == 100 * 4
    assert project_gpu.gpu_passes(200 * 50 * 60, 200, 100, 50) == 200 * 4
    work = {"n_images": 10, "work": {"forward_images": 60000.0, "backward_images": 1000.0, "forward_calls": 940,
                                     "backward_calls": 100}}
    assert project_gpu.work_of(work, "tokensearch")[2] == 400
    assert project_gpu.work_of(work, "pgd")[2] == 1040


def test_an_unsampled_classifier_takes_its_kind_s_measurements() -> None:
    """Its own classifier's where sampled; else those of the same objective and input kind; else of the
    same input kind."""
    from tokencert.config.recipes import Recipe

    def recipe(name: str, vocab: str | None, kind: str) -> Recipe:
        return Recipe(name, vocab, {"objective": kind})

    sampled = {r.name: r for r in (recipe("baseline", None, "standard"), recipe("pgd-at", None, "pgd_at"),
                                   recipe("discrete-gauss", "gauss", "standard"), recipe("flipset", "km", "flipset"))}
    values = {"baseline": 1.0, "pgd-at": 10.0, "discrete-gauss": 2.0, "flipset": 30.0}
    assert project_gpu.alike(sampled, values, recipe("pgd-at", None, "pgd_at")) == [10.0]
    assert project_gpu.alike(sampled, values, recipe("flipset-p7", "p7", "flipset")) == [30.0]
    assert project_gpu.alike(sampled, values, recipe("discrete-p7", "p7", "standard")) == [2.0]
    assert sorted(project_gpu.alike(sampled, values, recipe("noise-p7", "p7", "noise"))) == [2.0, 30.0]
    assert project_gpu.alike(sampled, {}, recipe("baseline", None, "standard")) == []


def test_the_sample_config_stacks_on_the_paper_s_plan() -> None:
    """benchmarks/paper_sample.yaml keeps the paper's attack settings and classifiers, on MNIST only."""
    from tokencert.config.params import load_params
    from tokencert.config.plan import resolve_plan

    root = Path(__file__).resolve().parents[1]
    paper = resolve_plan(load_params(root / "params.yaml", root / "config/paper.yaml"))
    sample = resolve_plan(load_params(root / "params.yaml", root / "config/paper.yaml",
                                      root / "benchmarks/paper_sample.yaml"))
    assert list(sample.datasets) == ["mnist"] and sample.datasets["mnist"].models == paper.datasets["mnist"].models
    assert {k: sample.config["attacks"][k] for k in ("eps", "pgd", "square", "suite")} == \
        {k: paper.config["attacks"][k] for k in ("eps", "pgd", "square", "suite")}
    assert set(sample.attacked) < set(paper.attacked)
    assert project_gpu.settings_differ(paper, sample, "attacks") == []
    assert project_gpu.settings_differ(paper, sample, "exactflip") == []
    frontier = resolve_plan(load_params(root / "params.yaml", root / "config/frontier.yaml"))
    assert "pgd" in project_gpu.settings_differ(frontier, sample, "attacks")
    assert "nodes" in project_gpu.settings_differ(frontier, sample, "exactflip")
