"""Rule `attack`: one attack at every eps of the grid on one model, judged on the hard model (in a cascade,
from the cumulative outcome of the attack before it)."""

from pathlib import Path

from tokencert.attacks import clean_accuracy, run_attack
from tokencert.attacks.base import predict
from tokencert.attacks.cascade import cascaded, prior_outcome
from tokencert.evaluation import counted, eval_set, load_model
from tokencert.outcomes import write_outcome
from tokencert.runtime import job, log

smk = snakemake  # noqa: F821 (injected by Snakemake)
w = smk.wildcards
params = smk.params.attacks
with job(smk, w.dataset, w.model, w.attack) as ctx:
    data = eval_set(Path(smk.input.manifest).parent, int(params["n_images"]), int(smk.config["seed"]),
                    smk.params.units, ctx.device)
    model = load_model(smk.input.model, smk.input.get("vocab"), w.dataset, ctx.device)
    baseline = load_model(smk.input.baseline[0], None, w.dataset, ctx.device) if smk.input.baseline else None
    eps = [float(e) for e in params["eps"]]

    def run(rows=slice(None), prior=None):
        return run_attack(w.attack, model, data.images[rows], data.labels[rows], eps, params, ctx.seed, data.scale,
                          baseline, data.indices[rows], prior)

    extra = {}
    with counted(model, baseline, device=ctx.device) as work:
        if params.get("cascade", False):
            prior = prior_outcome(smk.input.previous[0], data.indices) if smk.input.previous else None
            clean = (predict(model, data.images) == data.labels).cpu()
            outcome, extra = cascaded(run, prior, smk.params.after, clean, int(params.get("check_images", 16)))
        else:
            outcome = run()
    summary = write_outcome(smk.output.samples, smk.output.summary, outcome, data.indices, data.labels.cpu(), {
        "attack": w.attack, "dataset": w.dataset, "model": w.model, "units": smk.params.units,
        "clean_accuracy": clean_accuracy(model, data.images, data.labels),
        "params": {k: v for k, v in params.items() if k in (w.attack, "pgd")},
        "work": work.summary(data.labels.numel()), **extra,
    })
    log.info("%s on %s: robust accuracy %s at eps %s%s", w.attack, w.model,
             [round(a, 3) for a in summary["robust_accuracy"]], summary["eps"],
             " (cumulative: the cascade so far)" if extra else "")
