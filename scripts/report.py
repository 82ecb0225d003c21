"""Rule `report`: tables, figures, report.tex and the PDF from the results of the study."""

from pathlib import Path

from tokencert.config import resolve_plan
from tokencert.report import build
from tokencert.report.collect import GROUPS
from tokencert.runtime import job, log

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job(smk):
    files = {group: list(smk.input[group]) for group in GROUPS}  # the rule's declared inputs, nothing else
    written = build(resolve_plan(dict(smk.config)), files, Path(smk.output.tex).parent,
                    Path(smk.input.captions[0]).parent, pdf=bool(smk.params.pdf))
    if not smk.params.pdf:
        log.warning("latexmk not found: report.tex written, PDF not built (install TeX Live, see README)")
    log.info("report: %s", {k: len(v) for k, v in written.items()})
