# Report stage: tables, figures, report.tex and (when latexmk is installed) report.pdf,
# all regenerated from existing results: `snakemake --cores all report`.
import os
import shutil
from pathlib import Path

from tokencert.report.outputs import pdf_table_names

BUILD_PDF = shutil.which("latexmk") is not None
REPORT_FIGURES = [f"results/report/figures/{d}-{k}" for d in DATASETS for k in PLAN.report.figures]
CAPTIONS = "../report/captions"  # one text per figure kind and table: the HTML and the PDF report


rule report:
    input:
        # exactly the files the report reads (tokencert.report.collect), from the plan
        unpack(report_inputs),
        # relative to the working directory: a moved or copied project does not rerun its report
        captions=sorted(os.path.relpath(p) for p in Path(workflow.basedir, "report", "captions").glob("*.rst")),
    output:
        # the PDF's LaTeX tables, the main table and the landscape per dataset (readable at print size);
        # the HTML report shows rendered, whole tables
        tables=[f"results/report/tables/{t}.tex" for t in pdf_table_names(DATASETS)],
        html_tables=[
            report(f"results/report/tables/{t}.html", caption=f"{CAPTIONS}/{t}_table.rst", category="Tables")
            for t in ("main", "landscape", "vocab", "cost", "published")
        ],
        main_md="results/report/tables/main.md",
        figures=[
            report(f"{stem}.png", caption=f"{CAPTIONS}/{stem.rsplit('-', 1)[1]}.rst", category="Figures")
            for stem in REPORT_FIGURES
        ]
        + [f"{stem}.pdf" for stem in REPORT_FIGURES],
        tex="results/report/report.tex",
        metrics="results/report/metrics.json",
        pdf=(
            [report("results/report/report.pdf", caption=f"{CAPTIONS}/report_pdf.rst", category="Report"),
             "results/report/report.log"]  # LaTeX's log: the tables' font sizes, LaTeX's warnings
            if BUILD_PDF
            else []
        ),
    params:
        pdf=BUILD_PDF,
        # every setting the report states (run settings, radii, eps, report, reproduce): the report is cheap
        config=config,
        code=code("report.py"),
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/rules/report/report.tsv"
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        CONDA_ENV
    script:
        "../scripts/report.py"


TARGETS_REPORT = [rules.report.output.tex] + list(rules.report.output.pdf)
