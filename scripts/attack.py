"""Rule `attack`: one attack at every eps of the grid on one model, judged on the hard model."""

from pathlib import Path

from tokencert.attacks import clean_accuracy, run_attack
from tokencert.attacks.results import write_outcome
from tokencert.evaluation import counted, eval_set, load_model
from tokencert.runtime import job, log

smk = snakemake  # noqa: F821 (injected by Snakemake)
w = smk.wildcards
params = smk.params.attacks
with job(smk, w.dataset, w.model, w.attack) as ctx:
    data = eval_set(Path(smk.input.manifest).parent, int(params["n_images"]), int(smk.config["seed"]),
                    smk.params.units, ctx.device)
    model = load_model(smk.input.model, smk.input.get("vocab"), w.dataset, ctx.device)
    baseline = load_model(smk.input.baseline[0], None, w.dataset, ctx.device) if smk.input.baseline else None
    with counted(model, baseline, device=ctx.device) as work:
        outcome = run_attack(w.attack, model, data.images, data.labels, [float(e) for e in params["eps"]], params,
                             ctx.seed, data.scale, baseline)
    summary = write_outcome(smk.output.samples, smk.output.summary, outcome, data.indices, data.labels.cpu(), {
        "attack": w.attack, "dataset": w.dataset, "model": w.model, "units": smk.params.units,
        "clean_accuracy": clean_accuracy(model, data.images, data.labels),
        "params": {k: v for k, v in params.items() if k in (w.attack, "pgd")},
        "work": work.summary(data.labels.numel()),
    })
    log.info("%s on %s: robust accuracy %s at eps %s", w.attack, w.model,
             [round(a, 3) for a in summary["robust_accuracy"]], summary["eps"])
