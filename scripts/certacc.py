"""Rule `certacc`: results/{dataset}/certacc/{model}.json (a token classifier's certified accuracy with R_0)."""

from pathlib import Path

from tokencert.certacc import certacc_r0
from tokencert.runtime import job

smk = snakemake  # noqa: F821 (injected by Snakemake)
w = smk.wildcards
with job(smk, w.dataset, w.model) as ctx:
    certacc_r0(
        dataset=w.dataset,
        model=w.model,
        model_path=smk.input.model,
        vocab_path=smk.input.vocab,
        certificate_path=smk.input.certificate,
        certify_summary_path=smk.input.certify_summary,
        data_dir=Path(smk.input.manifest).parent,
        units=smk.params.units,
        grid=list(smk.params.radii),
        device=ctx.device,
        json_path=smk.output.summary,
    )
