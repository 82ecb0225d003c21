"""Rules `stamp_*`: a DVC stage boundary listing what the stage produced, with checksums (of JSON results
without their wall-clock fields: the same parameters give the same stamp)."""

from tokencert.io import stable_sha256, write_text
from tokencert.runtime import job

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job(smk):
    write_text(smk.output[0], "".join(f"{stable_sha256(p)}  {p}\n" for p in sorted(smk.input)))
