"""The GPU projection (benchmarks/project_gpu.py): the latency per network pass recovered from jobs whose
times follow the model exactly, passes scaled to the plan's images, unsampled classifiers, the sample config."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
project_gpu = pytest.importorskip("project_gpu")


def summary(forward: float, backward: float, calls: int, images: int = 10) -> dict:
    return {"n_images": images, "work": {"forward_images": forward * images, "backward_images": backward * images,
                                         "forward_calls": calls // 2, "backward_calls": calls - calls // 2}}


def test_fit_recovers_the_latency_per_network_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs timed exactly by the model (start, passes x latency, forward and twice as costly backward
    images): the fit returns the latency and every job's time; tokenflip's passes scale with the images."""
    latency = 2e-3
    work = {("baseline", "pgd"): (900.0, 850.0, 1000), ("baseline", "apgd-ce"): (200.0, 180.0, 400),
            ("discrete-gauss", "tokenflip"): (50.0, 0.0, 300)}
    images, rate = project_gpu.MEASURED_IMAGES, project_gpu.RATES["mnist"]["forward_per_s"]
    loops = {"tokenflip": images / 10}  # one image at a time: the 10 sampled images' passes, 100 times
    measured = {key: project_gpu.OVERHEAD_S + (f + 2 * b) * images / rate + calls * loops.get(key[1], 1) * latency
                for key, (f, b, calls) in work.items()}
    monkeypatch.setitem(project_gpu.MEASURED, "mnist", measured)
    fit = project_gpu.fit_latency({key: summary(*w) for key, w in work.items()}, "mnist")
    assert fit["latency_s"] == pytest.approx(latency, rel=1e-9)
    assert all(j["fitted_s"] == pytest.approx(j["measured_s"], rel=1e-9) for j in fit["jobs"].values())


def test_fit_needs_a_timed_job_in_the_sample() -> None:
    with pytest.raises(SystemExit, match="none of the GPU-timed attack jobs"):
        project_gpu.fit_latency({("baseline", "square"): summary(1.0, 1.0, 10)}, "mnist")


def test_passes_scale_with_the_loops_over_images_only() -> None:
    assert project_gpu.scaled_passes("pgd", 500.0, 10, 1000) == 500.0
    assert project_gpu.scaled_passes("tokenflip", 40.0, 10, 1000) == 40.0 * 100
    assert project_gpu.scaled_passes("tokensearch", 40.0, 10, 1000) == 40.0 * 20
    assert project_gpu.scaled_passes("tokensearch", 40.0, 60, 1000) == 40.0 * 20 / 2


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
