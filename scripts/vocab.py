"""Rule `vocab`: build results/{dataset}/vocab/{vocab}.pt and its quality metrics."""

from pathlib import Path

from tokencert.data import load_manifest, load_split
from tokencert.io import write_json
from tokencert.runtime import job, log
from tokencert.units import channel_scale
from tokencert.vocab import build_vocabulary, quality_metrics

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job(smk, smk.wildcards.dataset, smk.wildcards.vocab) as ctx:
    data_dir = Path(smk.input.manifest).parent
    train = load_split(data_dir, "train")
    vocab = build_vocabulary(smk.wildcards.vocab, dict(smk.params.recipe), train.images,
                             int(smk.params.patch_size), ctx.seed, ctx.device)
    scale = channel_scale(smk.params.units, load_manifest(data_dir))
    metrics = quality_metrics(vocab, load_split(data_dir, "test").images, scale)
    metrics.update(dataset=smk.wildcards.dataset, units=smk.params.units)
    vocab.save(smk.output.vocab)
    write_json(smk.output.metrics, metrics)
    log.info("%s: PSNR %.2f dB, perplexity %.1f, dead %.3f, mean patch cert %.4f",
             vocab.name, metrics["recon_psnr"], metrics["perplexity"], metrics["dead_fraction"],
             metrics["patch_cert_mean"])
