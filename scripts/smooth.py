"""Rule `smooth`: results/{dataset}/smooth/{model}/sigma-{sigma}.{tsv,json}."""

from pathlib import Path

from tokencert.runtime import job
from tokencert.smoothing import smooth_classifier

smk = snakemake  # noqa: F821 (injected by Snakemake)
w = smk.wildcards
with job(smk, w.dataset, w.model, w.sigma) as ctx:
    smooth_classifier(
        dataset=w.dataset,
        model=w.model,
        sigma=smk.params.sigma,
        model_path=smk.input.model,
        data_dir=Path(smk.input.manifest).parent,
        settings=dict(smk.params.smoothing),
        units=smk.params.units,
        grid=list(smk.params.radii),
        seed=ctx.seed,
        device=ctx.device,
        tsv_path=smk.output.tsv,
        json_path=smk.output.summary,
        vocab_path=smk.input.get("vocab"),
    )
