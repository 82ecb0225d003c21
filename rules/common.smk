# The study plan, resolved once by the tokencert package, and the input functions the rules share.
import os
import re
import sys

import tokencert.config as tc
from tokencert.certificates import CERTIFICATES, by_folder
from tokencert.data import DatasetError, check_declaration
from tokencert.provenance import code_hash
from tokencert.study import ATTACKS, OBJECTIVE_CODE, WORST

# `--config key={nested: 3}` arrives with every nested value as a string: give it YAML's types.
tc.retype_command_line(config, workflow.config_settings.config)
try:
    PLAN = tc.resolve_plan(config)  # validates the parameters
except tc.ConfigError as exc:
    sys.exit(" ".join(str(exc).split()))  # one line naming the key, before any job runs
DATASETS = list(PLAN.datasets)
for name in DATASETS:  # a local image folder's path, first image, and until built its checksum, layout, limits
    try:
        check_declaration(name, config["datasets"][name], config["seed"], os.path.exists(f"data/{name}/manifest.json"))
    except DatasetError as exc:
        sys.exit(" ".join(str(exc).split()))
for note in PLAN.notes:  # what the parameters leave out, one line each (not an error: stacked configs)
    print(note, file=sys.stderr)


def models_regex(trained=None):
    """The classifier names as a wildcard pattern (``trained``: only those trained, or only the external ones)."""
    recipes = {m: r for d in PLAN.datasets.values() for m, r in d.recipes.items()}
    names = [m for m, r in recipes.items() if trained is None or (r.external is None) == trained]
    return "|".join(re.escape(m) for m in sorted(names, key=len, reverse=True)) or "(?!)"


CONDA_ENV = f"../envs/{config.get('conda_env', 'cpu')}.yaml"


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.]*(-[A-Za-z0-9_.]+)*",
    vocab=r"[A-Za-z0-9][A-Za-z0-9_.]*(-[A-Za-z0-9_.]+)*",
    model=models_regex(),
    sigma=r"[0-9.e+-]+",
    attack="|".join(ATTACKS),
    cert="|".join(c.folder for c in CERTIFICATES.values()),


# Every rule file appends the final outputs of its stage; `rule all` requests them.
TARGETS = []


def stage_targets(*stages):
    """Final targets of the given result stages (results/<dataset>/<stage>/...)."""
    from pathlib import Path

    return [t for t in TARGETS if len(Path(t).parts) > 2 and Path(t).parts[2] in stages]


def code(script, *modules):
    """Hash of the code a job runs: its script's import closure in the package, modules it imports by
    name (a certificate's, an objective's) and the plugins; editing a module reruns exactly the jobs
    whose code runs it (tokencert.provenance)."""
    from pathlib import Path

    return code_hash(str(Path(workflow.basedir, "scripts", script)), *[m for m in modules if m],
                     *config.get("plugins") or [])


def units(w):
    """Units of the job's dataset."""
    return PLAN.datasets[w.dataset].units


def data_files(dataset):
    """train / test / manifest of a built dataset."""
    return {key: path.format(dataset=dataset) for key, path in rules.data.output.items()}


def model_file(dataset, model):
    """A trained classifier's weights."""
    return rules.train.output.model.format(dataset=dataset, model=model)


def vocab_file(dataset, vocab):
    """A built vocabulary."""
    return rules.vocab.output.vocab.format(dataset=dataset, vocab=vocab)


def recipe(w):
    """The recipe of the job's classifier."""
    return PLAN.datasets[w.dataset].recipes[w.model]


def classifier_inputs(w):
    """The test split and, for a token classifier, its vocabulary."""
    files = {k: v for k, v in data_files(w.dataset).items() if k != "train"}
    vocab = recipe(w).vocab
    return {**files, **({"vocab": vocab_file(w.dataset, vocab)} if vocab else {})}


def attack_files(dataset, model, kind="summary"):
    """The summaries (or per-sample CSVs) of every attack run on ``model``."""
    return [rules.attack.output[kind].format(dataset=dataset, model=model, attack=a) for a in PLAN.attacks_on(model)]


def certificate_attacks(w):
    """The suite's per-sample worst case, for the bracket, where the classifier is attacked."""
    bracketed = by_folder(w.cert).bracket and w.model in PLAN.attacked_models()
    return {"attacks": rules.attack_worst.output.samples.format(dataset=w.dataset, model=w.model)} if bracketed else {}


def report_inputs(w):
    """Every file the report reads, from the plan: nothing else is read, and a missing one is rebuilt."""
    files = {"manifests": [], "vocab": [], "certify": [], "finals": [], "smoothing": [], "certificates": [],
             "attacks": [], "brackets": [], "examples": []}
    for d, dp in PLAN.datasets.items():
        files["manifests"].append(data_files(d)["manifest"])
        files["vocab"] += [rules.vocab.output.metrics.format(dataset=d, vocab=v) for v in PLAN.vocabularies]
        files["certify"] += [rules.certify.output.summary.format(dataset=d, vocab=v) for v in PLAN.vocabularies]
        files["finals"] += [rules.train.output.final.format(dataset=d, model=m) for m in dp.models]
        files["smoothing"] += [rules.smooth.output.summary.format(dataset=d, model=m, sigma=tc.format_sigma(s))
                               for m, s in dp.smoothed]
        attacked = [m for m in PLAN.attacked_models() if m in dp.models]
        for c in CERTIFICATES.values():
            for m in PLAN.certified_models(d, c):
                files["certificates"].append(rules.certificate.output.summary.format(dataset=d, cert=c.folder, model=m))
                if c.bracket and m in attacked:
                    files["brackets"].append(rules.certificate.output.samples.format(dataset=d, cert=c.folder, model=m))
        for m in attacked:
            files["attacks"] += attack_files(d, m) + [rules.attack_worst.output.summary.format(dataset=d, model=m)]
        files["examples"] += [vocab_file(d, PLAN.report.example_vocab), data_files(d)["test"],
                              rules.certify.output.maps.format(dataset=d, vocab=PLAN.report.example_vocab)]
    return files
