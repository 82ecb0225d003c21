"""Rule `import_classifier`: results/{dataset}/models/{model}/{model.pt,final.json} from a researcher's checkpoint."""

from pathlib import Path

from tokencert.external import import_classifier
from tokencert.runtime import job

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job(smk, smk.wildcards.dataset, smk.wildcards.model) as ctx:
    import_classifier(
        dataset=smk.wildcards.dataset,
        model=smk.wildcards.model,
        spec=dict(smk.params.external),
        data_dir=Path(smk.input.manifest).parent,
        units=smk.params.units,
        vocab_path=smk.input.get("vocab"),
        out_dir=Path(smk.output.model).parent,
        device=ctx.device,
    )
