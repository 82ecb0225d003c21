# Report stage: tables, figures, report.tex and (when latexmk is installed) report.pdf,
# all regenerated from existing results: `snakemake --cores all report`.
import shutil

BUILD_PDF = shutil.which("latexmk") is not None
REPORT_FIGURES = [f"results/report/figures/{d}-{k}" for d in DATASETS for k in PLAN.report.figures]


rule report:
    input:
        # exactly the files the report reads (tokencert.report.collect), from the plan
        unpack(report_inputs),
    output:
        main=report("results/report/tables/main.tex", caption="../report/captions/main_table.rst", category="Tables"),
        vocab=report("results/report/tables/vocab.tex", caption="../report/captions/vocab_table.rst", category="Tables"),
        cost=report("results/report/tables/cost.tex", caption="../report/captions/cost_table.rst", category="Tables"),
        main_md="results/report/tables/main.md",
        figures=[
            report(f"{stem}.png", caption=f"../report/captions/{stem.rsplit('-', 1)[1]}.rst", category="Figures")
            for stem in REPORT_FIGURES
        ]
        + [f"{stem}.pdf" for stem in REPORT_FIGURES],
        tex="results/report/report.tex",
        metrics="results/report/metrics.json",
        pdf=(
            [report("results/report/report.pdf", caption="../report/captions/report_pdf.rst", category="Report")]
            if BUILD_PDF
            else []
        ),
    params:
        pdf=BUILD_PDF,
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
