"""Rule `exact_certify`: R_0 / R_2 certified accuracy of a discrete model and the robustness bracket."""

from pathlib import Path

import pandas as pd
import torch

from tokencert.attacks.results import read_outcome
from tokencert.certacc import summarize
from tokencert.evaluation import eval_set, load_model
from tokencert.exact import bracket, single_flip_certificates
from tokencert.io import atomic_path, write_json
from tokencert.runtime import job, log

smk = snakemake  # noqa: F821 (injected by Snakemake)
w = smk.wildcards
with job(smk, w.dataset, w.model) as ctx:
    data = eval_set(Path(smk.input.manifest).parent, int(smk.params.exact["n_images"]), int(smk.config["seed"]),
                    smk.params.units, ctx.device)
    model = load_model(smk.input.model, smk.input.vocab, w.dataset, ctx.device)
    res = single_flip_certificates(model, data.images, data.labels, data.scale,
                                   int(smk.params.exact.get("batch_size", 512)))
    attacks, attack_idx, _ = read_outcome(smk.input.attacks)
    upper, stats = bracket(res.certified, res.prediction == res.label, data.indices, attack_idx, attacks.min_norm)
    correct, none = res.prediction == res.label, torch.zeros_like(res.flip_safe)
    common = dict(dataset=w.dataset, model=w.model, units=smk.params.units, correct=correct, abstain=none,
                  grid=smk.params.radii, sigma=None, seconds_per_image=res.seconds_per_image)
    summary = {
        "R0": summarize("R0", radii=res.r0, **common),
        "R2": summarize("R2", radii=torch.where(res.flip_safe, res.r2, res.r0), **common),
        "bracket": stats,
        "flips_checked_mean": float(res.flips_checked.double().mean()),
    }
    frame = pd.DataFrame({"idx": data.indices.tolist(), "label": res.label.tolist(),
                          "prediction": res.prediction.tolist(), "r0": res.r0.tolist(), "r2": res.r2.tolist(),
                          "flip_safe": res.flip_safe.int().tolist(), "certified_radius": res.certified.tolist(),
                          "upper_bound": upper.tolist(), "flips_checked": res.flips_checked.tolist()})
    with atomic_path(smk.output.samples) as tmp:
        frame.to_csv(tmp, index=False)
    write_json(smk.output.summary, summary)
    log.info("%s: ACR R_0 %.4f, R_2 %.4f; %.1f flips/image; bracket %s", w.model, summary["R0"]["acr"],
             summary["R2"]["acr"], summary["flips_checked_mean"], stats)
