"""Rules `setcert` and `lipcert`: deterministic certified radii (flip-set of a token classifier, margin of
a Lipschitz network), checked against the attacks' bracket."""

from pathlib import Path

from tokencert.detcert import deterministic_certificates
from tokencert.runtime import job

smk = snakemake  # noqa: F821 (injected by Snakemake)
w = smk.wildcards
with job(smk, w.dataset, w.model) as ctx:
    deterministic_certificates(
        method=smk.params.method,
        dataset=w.dataset,
        model=w.model,
        model_path=smk.input.model,
        vocab_path=smk.input.get("vocab"),
        data_dir=Path(smk.input.manifest).parent,
        n_images=int(smk.params.setcert["n_images"]),
        enumeration_limit=int(smk.params.setcert["enumeration_limit"]),
        linear=smk.params.setcert["relaxation"] == "linear",
        seed=int(smk.config["seed"]),
        units=smk.params.units,
        grid=list(smk.params.radii),
        attacks_path=smk.input.get("attacks"),
        json_path=smk.output.summary,
        csv_path=smk.output.samples,
    )
