"""Rule `data`: build data/{dataset}/{train,test}.pt and manifest.json."""

from pathlib import Path

from tokencert.data import build_dataset, write_dataset
from tokencert.runtime import job, log

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job(smk, smk.wildcards.dataset) as ctx:
    manifest, splits = build_dataset(
        smk.wildcards.dataset, dict(smk.params.spec), int(smk.config["seed"]), Path(smk.params.cache_dir),
        Path(smk.output.manifest).parent.parent,
    )
    write_dataset(Path(smk.output.manifest).parent, manifest, splits)
    log.info("wrote %s: %s", smk.wildcards.dataset, manifest["counts"])
