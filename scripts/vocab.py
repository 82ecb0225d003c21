"""Rule `vocab`: build results/{dataset}/vocab/{vocab}.pt and its quality metrics."""

from pathlib import Path

from tokencert.data import load_split
from tokencert.io import write_json
from tokencert.runtime import job, log
from tokencert.vocab import build_vocabulary, quality_metrics

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job(smk, smk.wildcards.dataset, smk.wildcards.vocab) as ctx:
    data_dir = Path(smk.input.manifest).parent
    train = load_split(data_dir, "train")
    vocab = build_vocabulary(smk.wildcards.vocab, dict(smk.params.recipe), train.images,
                             int(smk.params.patch_size), ctx.seed, ctx.device)
    metrics = quality_metrics(vocab, load_split(data_dir, "test").images)
    metrics.update(dataset=smk.wildcards.dataset)
    vocab.save(smk.output.vocab)
    write_json(smk.output.metrics, metrics)
    log.info("%s: PSNR %.2f dB, perplexity %.1f, dead %.3f",
             vocab.name, metrics["recon_psnr"], metrics["perplexity"], metrics["dead_fraction"])
