"""Rule `attack_worst`: per-sample worst case over every attack run on a model, with sanity checks (in a
cascade: on each attack's run alone on the check images, and per image on what the black-box attacks broke)."""

from pathlib import Path

from tokencert.attacks import worst_case
from tokencert.attacks.cascade import alone_outcomes, masking_warnings
from tokencert.attacks.suite import sanity_warnings
from tokencert.data import load_manifest
from tokencert.io import read_json
from tokencert.outcomes import read_outcome, summary_checks, write_outcome
from tokencert.runtime import job, log

smk = snakemake  # noqa: F821 (injected by Snakemake)
w = smk.wildcards
with job(smk, w.dataset, w.model):
    outcomes, summaries = {}, [read_json(p) for p in smk.input.summaries]
    for path, summary in zip(smk.input.samples, summaries, strict=True):
        outcomes[summary["attack"]], indices, labels = read_outcome(path)
        outcomes[summary["attack"]].checks = summary_checks(summary)
    manifest = load_manifest(Path(smk.input.manifest).parent)
    shape = (int(manifest["shape"][0]), int(manifest["shape"][1]))
    clean = summaries[0]["clean_accuracy"]
    cascaded = {s["attack"]: s for s in summaries if "cascade" in s}
    warnings = sanity_warnings(w.model, bool(smk.params.token_classifier), shape,
                               alone_outcomes(cascaded) if cascaded else outcomes, smk.params.units)
    warnings += masking_warnings(cascaded)
    summary = write_outcome(smk.output.samples, smk.output.summary, worst_case(outcomes), indices, labels, {
        "attack": "worst", "attacks": sorted(outcomes), "dataset": w.dataset, "model": w.model,
        "units": smk.params.units, "clean_accuracy": clean, "sanity": {"warnings": warnings},
        **({"cascade": {"order": smk.params.cascade}} if smk.params.cascade else {}),
    })
    log.info("worst case on %s over %s: %s", w.model, sorted(outcomes), summary["robust_accuracy"])
