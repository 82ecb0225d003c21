"""Rules `stamp_*`: a DVC stage boundary listing what the stage produced, with checksums."""

from tokencert.io import sha256_file, write_text
from tokencert.runtime import job

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job(smk):
    write_text(smk.output[0], "".join(f"{sha256_file(p)}  {p}\n" for p in sorted(smk.input)))
