"""Rule `certificate`: a deterministic certificate of the family (tokencert.certificates) on one classifier."""

from pathlib import Path

import torch

from tokencert.certificates import by_folder
from tokencert.certificates.job import run_certificate
from tokencert.runtime import job

smk = snakemake  # noqa: F821 (injected by Snakemake)
w = smk.wildcards
with job(smk, w.dataset, w.cert, w.model) as ctx:
    cert = by_folder(w.cert)
    run_certificate(
        cert,
        dataset=w.dataset,
        model=w.model,
        model_path=smk.input.model,
        vocab_path=smk.input.get("vocab"),
        data_dir=Path(smk.input.manifest).parent,
        settings=smk.params.settings,
        seed=int(smk.config["seed"]),
        units=smk.params.units,
        grid=list(smk.params.radii),
        attacks_path=smk.input.get("attacks"),
        json_path=smk.output.summary,
        csv_path=smk.output.samples,
        device=ctx.device if cert.gpu else torch.device("cpu"),
    )
