"""Projection: the time a config's plan takes on one GPU, from the work its jobs record on a small run of
the same plan and the GPU's measured rates.

    python benchmarks/project_gpu.py --sample SAMPLE/results [--configfile config/paper.yaml]

1. The plan: ``params.yaml`` with the config files stacked (``tokencert.config.resolve_plan``): every
   training, smoothing, attack and certificate job of every dataset.
2. The sample: the same plan run small, ``benchmarks/paper_sample.yaml`` stacked last (MNIST only, the
   embedded 5,000 images, 5 epochs, 10 attacked images), in a copy of the workflow:

       snakemake --cores 2 --keep-going --configfile config/paper.yaml benchmarks/paper_sample.yaml

   Each attack and certificate job records its work (``tokencert.evaluation.counted``): images forward and
   backward, network passes (calls), seconds. Per image it is what the projection scales: images to the
   plan's count, passes kept (the attacks batch every image; ``tokensearch`` searches 50 at a time, so its
   passes scale with the batches). A job the sample did not run takes the median of the sampled
   classifiers' with the same objective and input kind (else the same input kind): a CIFAR-10 job takes
   MNIST's work per image at CIFAR-10's rates, an assumption (192 token patches per image instead of 49),
   and another config's classifier (``--configfile config/frontier.yaml``) that of its kind in the paper's.
3. The GPU (:data:`RATES`, measured on one NVIDIA H200, each with its source): training epochs and
   noisy samples per second from the device run of 2026-11-26; a per-pass latency per dataset and input
   kind (pixel, token) is fitted (non-negative least squares) to the attack jobs timed on that device
   (:data:`MEASURED`), with the sample's work for the same jobs (MNIST's for CIFAR-10's); each timed job's
   modelled time is printed beside the measured one, and their ratio calibrates that attack on the
   dataset's classifiers of the same input kind (a timed job projects to its measured time).

Per job: training ``epochs x seconds per standard epoch x factor`` (the factor: the sample's CPU seconds
per epoch against ``baseline``'s, as ``bench_training`` measures the objectives; the GPU is assumed to
keep the CPU's ratios, which overstates token work a GPU does in parallel);
smoothing ``images x (n0 + n) / noisy samples per second``; an attack ``(overhead + passes x latency +
(forward images + 2 x backward images) / forward rate) x calibration``. Certificates run on the CPU (their rules
declare no GPU but ``R_0`` / ``R_2``, which take seconds): the sample's CPU seconds per image times the
plan's images, on the cores beside the GPU, reported apart. Not projected: data, vocabularies, reports.
Writes benchmarks/out/project_gpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls

from tokencert.certificates import CERTIFICATES
from tokencert.config.params import load_params
from tokencert.config.plan import Plan, resolve_plan
from tokencert.config.recipes import BASELINE, Recipe
from tokencert.io import write_json, write_text
from tokencert.models import forward_batches

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

RATES: dict[str, dict[str, Any]] = {
    # training images per second of a standard epoch: MNIST CNN 1.3-1.6 s per 60,000 images, CIFAR-10
    # ResNet-18 3.6-4.4 s per 50,000 (README "GPU workstation", the H200 run of 2026-11-26; the slower end)
    # noisy samples per second (forward): bench_smoothing on the H200 (MNIST pixels 2.48 M/s, tokens K = 256
    # 1.54 M/s; ResNet-18 fp32 138,000/s)
    "mnist": {"test_images": 10000, "epoch_s": 1.6, "forward_per_s": 2.48e6,
              "token_forward_per_s": 1.54e6},
    "cifar10": {"test_images": 10000, "epoch_s": 4.4, "forward_per_s": 1.38e5,
                "token_forward_per_s": 1.38e5},
}
"""The GPU's rates per dataset (its network: the study's CNN on MNIST, ResNet-18 on CIFAR-10)."""

MEASURED: dict[str, dict[tuple[str, str], float]] = {
    # seconds per attack job on the H200, 1,000 images, the paper's 10 eps and attack settings (README "GPU
    # workstation"; benchmarks/gpu_paper_jobs.sh on classifiers trained one epoch; "~": read from a progress
    # bar). Square is left out (timed one eps at a time, before it was batched over the eps grid).
    "mnist": {("baseline", "pgd"): 26.0, ("baseline", "apgd-ce"): 10.0, ("discrete-gauss", "sspgd"): 155.0,
              ("discrete-gauss", "bpda"): 37.0, ("discrete-gauss", "tokenflip"): 53.0},
    "cifar10": {("baseline", "pgd"): 70.0, ("baseline", "apgd-ce"): 16.0, ("discrete-gauss", "bpda"): 67.0,
                ("discrete-gauss", "tokenflip"): 650.0},  # tokenflip: ~1.5 images/s, 192 patches per image
}  # tokenflip was timed (and sampled) one image at a time, its geometry on the CPU: an upper bound since it steps
#    a chunk of images together on their device (benchmarks/bench_tokenflip.py)
"""Attack jobs timed on the GPU, per dataset: what its per-pass latencies are fitted to, and what calibrates
the projection of the same attack on the dataset's classifiers of the same input kind."""

MEASURED_IMAGES = 1000
OVERHEAD_S = 5.0  # a job's start on the GPU: Python, torch, CUDA context, loading (not fitted: too few jobs)
BACKWARD_COST = 2.0  # a backward image costs twice a forward one (the usual rule; not measured separately)
LOOP_IMAGES = {"tokenflip": 1, "tokensearch": 50}  # attacks that loop over images, this many at a time
"""Images per network pass of the attacks that do not batch every image (``tokenflip``: one by one in the sample
of 2026-12-04, before it stepped chunks of images together; ``tokensearch``:
``tokencert.flipsearch.adversarial.SearchSettings.batch``)."""
CHUNKED = {"tokensearch"}
"""Attacks whose forward passes go in chunks of ``models.FORWARD_BATCH`` (64 on the sample's CPU): their passes
are re-counted for the GPU (:func:`gpu_passes`)."""


def attack_summaries(sample: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The sample's MNIST attack summaries by (classifier, attack)."""
    return {(p.parent.name, p.stem): json.loads(p.read_text())
            for p in sorted((sample / "mnist" / "attacks").glob("*/*.json")) if p.stem != "worst"}


def certificate_summaries(sample: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The sample's MNIST certificate summaries by (folder, classifier)."""
    return {(cert.folder, p.stem): json.loads(p.read_text()) for cert in CERTIFICATES.values()
            for p in sorted((sample / "mnist" / cert.folder).glob("*.json"))}


def alone(attacks: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """``attacks``, checked to have run alone (no ``attacks.cascade``) where the GPU timed the same jobs: a
    cascade's later attacks see only the images the earlier ones left, so their work would miscalibrate."""
    if any("cascade" in attacks[key] for timed in MEASURED.values() for key in timed if key in attacks):
        raise SystemExit("the GPU-timed jobs ran alone: fit them on a sample without attacks.cascade "
                         "(--timed-sample)")
    return attacks


def work_of(summary: dict[str, Any], attack: str = "") -> tuple[float, float, float, float]:
    """(forward images, backward images) per sampled image, the network passes, and the sampled images. The
    passes of an attack in :data:`CHUNKED` are its passes on a GPU (:func:`gpu_passes`), not the sample's."""
    w, n = summary["work"], summary["n_images"]
    passes = w.get("forward_calls", 0) + w.get("backward_calls", 0)
    if attack in CHUNKED and w.get("backward_calls", 0):
        passes = gpu_passes(w["forward_images"], w["backward_calls"], n, LOOP_IMAGES[attack])
    return w["forward_images"] / n, w["backward_images"] / n, passes, n


def gpu_passes(forward_images: float, steps: int, sampled: int, loop: int) -> float:
    """A search's network passes on a GPU, from a CPU sample whose candidates went through the network
    ``models.FORWARD_BATCH["cpu"]`` (64) at a time: each of its ``steps`` (one gradient pass each) sends
    ``forward_images / steps`` candidates for the sample's loop of ``min(sampled, loop)`` images; a full loop of
    ``loop`` images sends proportionally more, in passes of the GPU's batch (:func:`models.forward_batches`).
    Per loop as big as the plan's, so :func:`scaled_passes` scales it by the loops."""
    per_step = forward_images / steps * loop / min(sampled, loop)
    return steps * (1 + len(forward_batches(math.ceil(per_step), torch.device("cuda"))))


def scaled_passes(attack: str, passes: float, sampled: int, images: int) -> float:
    """A job's network passes at ``images`` from the sample's at ``sampled``: the same for an attack that
    batches every image, in proportion to the loops for one that does not (:data:`LOOP_IMAGES`)."""
    step = LOOP_IMAGES.get(attack)
    return passes if step is None else passes * math.ceil(images / step) / math.ceil(sampled / step)


def attack_seconds(work: tuple[float, float, float, float], attack: str, images: int, latency: float,
                   forward_per_s: float) -> float:
    """An attack job's GPU seconds: start, passes x latency, images through the network (backward at
    :data:`BACKWARD_COST` forward ones)."""
    f, b, passes, n = work
    return (OVERHEAD_S + scaled_passes(attack, passes, int(n), images) * latency
            + images * (f + BACKWARD_COST * b) / forward_per_s)


def kind_of(recipe: Recipe) -> str:
    """A classifier's input kind: ``token`` (it sees a tokenized image) or ``pixel``."""
    return "pixel" if recipe.vocab is None else "token"


def fit_latency(attacks: dict[tuple[str, str], dict[str, Any]], dataset: str,
                recipes: dict[str, Recipe]) -> dict[str, Any]:
    """``dataset``'s per-pass latency per input kind: least squares (non-negative) over its GPU-timed attack
    jobs (:data:`MEASURED`) on classifiers of that kind, with the sample's work for them, leaving out the
    attacks that loop over images (:data:`LOOP_IMAGES`: their passes carry per-image host work); a kind
    without such a job takes the other's. Each timed job's modelled time and its calibration, measured /
    modelled, which :func:`job_seconds` applies to the same attack on the dataset's classifiers of that kind."""
    timed = {key: work_of(attacks[key]) for key in MEASURED[dataset] if key in attacks}
    if not timed:
        raise SystemExit(f"the sample has none of the GPU-timed attack jobs {sorted(MEASURED[dataset])}")
    rate = RATES[dataset]["forward_per_s"]
    latency: dict[str, float] = {}
    for kind in ("pixel", "token"):
        jobs = {key: w for key, w in timed.items() if kind_of(recipes[key[0]]) == kind and key[1] not in LOOP_IMAGES}
        if jobs:
            passes = np.array([[scaled_passes(a, w[2], int(w[3]), MEASURED_IMAGES)] for (_, a), w in jobs.items()])
            rest = [MEASURED[dataset][key] - attack_seconds(w, key[1], MEASURED_IMAGES, 0.0, rate)
                    for key, w in jobs.items()]
            latency[kind] = float(nnls(passes, np.array(rest))[0][0])
    if not latency:
        raise SystemExit(f"{dataset}: only attacks that loop over images were timed on the GPU")
    for kind in ("pixel", "token"):
        latency.setdefault(kind, next(iter(latency.values())))
    jobs_out = {}
    for (m, a), w in timed.items():
        kind = kind_of(recipes[m])
        modelled = attack_seconds(w, a, MEASURED_IMAGES, latency[kind], rate)
        jobs_out[f"{m} / {a}"] = {"attack": a, "kind": kind, "measured_s": MEASURED[dataset][(m, a)],
                                  "modelled_s": modelled, "calibration": MEASURED[dataset][(m, a)] / modelled}
    return {"latency_s": latency, "jobs": jobs_out}


def job_seconds(fit: dict[str, Any], work: tuple[float, float, float, float], attack: str, kind: str,
                images: int, forward_per_s: float) -> float:
    """An attack job's GPU seconds on a classifier of input ``kind``: the model at the kind's latency,
    times the calibration of the same attack and kind where the GPU timed one (so a timed job's own
    classifier gets its measured time, another its share by work)."""
    calibration = {(j["attack"], j["kind"]): j["calibration"] for j in fit["jobs"].values()}
    return (attack_seconds(work, attack, images, fit["latency_s"][kind], forward_per_s)
            * calibration.get((attack, kind), 1.0))


def training_seconds(sample: Path) -> dict[str, float]:
    """Seconds per epoch of each sampled classifier's training (``final.json``: ``train_seconds``, the
    loop alone, and the epochs)."""
    out = {}
    for path in sorted((sample / "mnist" / "models").glob("*/final.json")):
        final = json.loads(path.read_text())
        out[path.parent.name] = final["train_seconds"] / final["settings"]["epochs"]
    if BASELINE not in out:
        raise SystemExit(f"no sampled {BASELINE} training in {sample / 'mnist' / 'models'}")
    return out


def alike(sampled: dict[str, Recipe], values: dict[str, Any], recipe: Recipe) -> list[Any]:
    """What the sample measured for ``recipe``: its own classifier's, else those of the sampled classifiers
    with the same objective and input kind, else with the same input kind (the caller takes the median)."""
    if recipe.name in values:
        return [values[recipe.name]]
    kind = kind_of(recipe)
    for same in (lambda r: r.kind == recipe.kind and kind_of(r) == kind, lambda r: kind_of(r) == kind):
        found = [v for m, v in values.items() if m in sampled and same(sampled[m])]
        if found:
            return found
    return []


def median_work(works: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    """Element-wise median of (forward, backward, passes, sampled images)."""
    return tuple(statistics.median(w[i] for w in works) for i in range(4))  # type: ignore[return-value]


def settings_differ(plan: Plan, sample_plan: Plan, section: str) -> list[str]:
    """The keys of a params ``section`` (``attacks``, a certificate's) but the image counts and per-classifier
    lists in which ``plan`` differs from the sample's: that stage's work cannot be read from the sample."""
    ours, theirs = (dict(p.config.get(section) or {}) for p in (plan, sample_plan))
    return sorted(k for k in set(ours) | set(theirs)
                  if k not in ("n_images", "models") and ours.get(k) != theirs.get(k))


def project(plan: Plan, sample_plan: Plan, sample: Path, timed: Path | None = None) -> dict[str, Any]:
    """GPU and CPU seconds of every job of ``plan`` by stage and dataset, from the ``sample`` run of
    ``sample_plan`` (MNIST). The latencies and calibrations are fitted on the work of the GPU-timed jobs in
    ``timed`` (a sample of the same plan without a cascade, as they ran; default ``sample``)."""
    sampled = sample_plan.datasets["mnist"].recipes
    attacks = attack_summaries(sample)
    certs = certificate_summaries(sample)
    fitted = alone(attacks if timed is None else attack_summaries(timed))
    fits = {d: fit_latency(fitted, d, sampled) for d in plan.datasets if d in MEASURED}
    per_epoch = training_seconds(sample)
    factors = {m: v / per_epoch[BASELINE] for m, v in per_epoch.items()}  # against standard pixel training
    gpu: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    by_attack: dict[str, float] = defaultdict(float)
    missing: list[str] = []
    n_attacked = int(plan.config["attacks"]["n_images"])
    differ = {section: keys for section in ["attacks", *(c.folder for c in CERTIFICATES.values())]
              if (keys := settings_differ(plan, sample_plan, section))}
    for d, dplan in plan.datasets.items():
        rates = RATES.get(d) or RATES["mnist"]
        fit = fits.get(d) or fits["mnist"]
        for name, recipe in dplan.recipes.items():
            if recipe.external is None:
                epochs = int({**dplan.training, **recipe.training}["epochs"])
                factor = statistics.median(alike(sampled, factors, recipe) or [1.0])
                gpu[f"{d} training"] += epochs * rates["epoch_s"] * factor
        smoothing = dplan.smoothing
        images = math.ceil(rates["test_images"] / int(smoothing.get("every", 1)))
        for name, _ in dplan.smoothed:
            per_s = rates["token_forward_per_s" if kind_of(dplan.recipes[name]) == "token" else "forward_per_s"]
            gpu[f"{d} smoothing"] += images * (int(smoothing["n0"]) + int(smoothing["n"])) / per_s
        for model, attack in [] if "attacks" in differ else plan.attacked:
            if model not in dplan.recipes:
                continue
            works = alike(sampled, {m: work_of(s, a) for (m, a), s in attacks.items() if a == attack},
                          dplan.recipes[model])
            if not works:
                missing.append(f"{d}/{model}/{attack}")
                continue
            seconds = job_seconds(fit, median_work(works), attack, kind_of(dplan.recipes[model]), n_attacked,
                                  rates["forward_per_s"])
            gpu[f"{d} attacks"] += seconds
            by_attack[f"{d} {attack}"] += seconds
        patches = 1.0 if d == "mnist" else 192 / 49  # CIFAR-10: 4x the token patches (a stated guess)
        for cert in (c for c in CERTIFICATES.values() if c.folder not in differ):
            seconds = {m: s["seconds_per_image"] for (folder, m), s in certs.items() if folder == cert.folder}
            for model in plan.certified_models(d, cert):
                found = alike(sampled, seconds, dplan.recipes[model])
                if not found:
                    missing.append(f"{d}/{cert.folder}/{model}")
                    continue
                count = cert.settings(plan.config, model).get("n_images") or rates["test_images"]
                cpu[f"{d} certificates ({cert.name})"] += statistics.median(found) * int(count) * patches
    return {"gpu_s": dict(gpu), "cpu_s": dict(cpu), "attacks_s": dict(by_attack), "latency": fits,
            "training_factors": factors,
            "not_sampled": missing, "not_projected": differ}


def markdown(result: dict[str, Any], configs: list[str]) -> str:
    """The projection as a table."""
    lines = [f"Projected on one GPU (H200 rates), {' + '.join(configs)}:", "", "| stage | GPU hours |", "|---|---:|"]
    lines += [f"| {k} | {v / 3600:.2f} |" for k, v in sorted(result["gpu_s"].items())]
    lines += [f"| **total on the GPU** | **{sum(result['gpu_s'].values()) / 3600:.2f}** |", "",
              "| CPU beside the GPU | CPU hours |", "|---|---:|"]
    lines += [f"| {k} | {v / 3600:.2f} |" for k, v in sorted(result["cpu_s"].items())]
    if result["attacks_s"]:
        lines += ["", "| attacks | GPU hours |", "|---|---:|"]
        lines += [f"| {k} | {v / 3600:.2f} |" for k, v in sorted(result["attacks_s"].items(), key=lambda kv: -kv[1])]
    for d, fit in result["latency"].items():
        per_kind = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in fit["latency_s"].items())
        lines += ["", f"{d}: per network pass {per_kind}, fitted to the GPU-timed jobs ({OVERHEAD_S:g} s per job, "
                  f"backward images at {BACKWARD_COST:g} forward ones); each timed job calibrates its attack:", "",
                  "| job (1,000 images) | input | measured s | modelled s | calibration |", "|---|---|---:|---:|---:|"]
        lines += [f"| {k} | {v['kind']} | {v['measured_s']:.0f} | {v['modelled_s']:.0f} | {v['calibration']:.2f} |"
                  for k, v in fit["jobs"].items()]
    if result["not_projected"]:
        lines += ["", "Not projected, the sample ran other settings: " + "; ".join(
            f"{section} ({', '.join(keys)})" for section, keys in result["not_projected"].items())]
    if result["not_sampled"]:
        lines += ["", f"Not sampled, counted as nothing: {', '.join(result['not_sampled'])}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, required=True, help="results/ of the sample run")
    parser.add_argument("--timed-sample", type=Path, help="results/ of a sample without attacks.cascade, where "
                        "the GPU-timed jobs' work is read (default: --sample)")
    parser.add_argument("--configfile", nargs="*", default=["config/paper.yaml"], help="the plan projected")
    parser.add_argument("--sample-configfile", nargs="*", default=["config/paper.yaml", "benchmarks/paper_sample.yaml"],
                        help="the plan the sample ran")
    args = parser.parse_args()
    plan, sample_plan = (resolve_plan(load_params(ROOT / "params.yaml", *(ROOT / c for c in files)))
                         for files in (args.configfile, args.sample_configfile))
    result = project(plan, sample_plan, args.sample, args.timed_sample)
    out = HERE / "out"
    write_json(out / "project_gpu.json", {"configs": args.configfile, **result})
    text = markdown(result, args.configfile)
    write_text(out / "project_gpu.md", text)
    print(text)


if __name__ == "__main__":
    main()
