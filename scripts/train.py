"""Rule `train`: results/{dataset}/models/{model}/{model.pt,metrics.csv,final.json}."""

from pathlib import Path

from tokencert.runtime import job
from tokencert.train import train_classifier

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job(smk, smk.wildcards.dataset, smk.wildcards.model) as ctx:
    train_classifier(
        dataset=smk.wildcards.dataset,
        model=smk.wildcards.model,
        data_dir=Path(smk.input.manifest).parent,
        out_dir=Path(smk.output.model).parent,
        training=dict(smk.params.training),
        objective=dict(smk.params.objective),
        units=smk.params.units,
        seed=ctx.seed,
        device=ctx.device,
        vocab_path=smk.input.get("vocab"),
    )
