"""Rule `certify`: certificate maps of the test set and their summaries."""

from pathlib import Path

from tokencert.certify import certify_dataset
from tokencert.data import load_split_in_units
from tokencert.io import save_torch, write_json
from tokencert.runtime import job, log
from tokencert.vocab import Vocabulary

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job(smk, smk.wildcards.dataset, smk.wildcards.vocab):
    test = load_split_in_units(Path(smk.input.manifest).parent, "test", smk.params.units)
    certs, summary = certify_dataset(Vocabulary.load(smk.input.vocab), test.split.images, test.scale)
    summary.update(dataset=smk.wildcards.dataset, vocab=smk.wildcards.vocab, units=smk.params.units)
    save_torch(smk.output.maps, {"assignment": certs.assignment, "radii": certs.radii,
                                 "map_shape": list(certs.map_shape)})
    write_json(smk.output.summary, summary)
    log.info("%s: patch cert %.4f, img cert (summed) %.3f, mean R_0 %.5f, %.1f us/image",
             smk.wildcards.vocab, summary["patch_cert"], summary["img_cert_summed"], summary["r0_mean"],
             1e6 * summary["seconds_per_image"])
