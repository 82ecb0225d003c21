# Report stage: tables, figures, report.tex and (when latexmk is installed) report.pdf,
# all regenerated from existing results: `snakemake --cores all report`.
import shutil

FIGURE_KINDS = ["certified", "robust", "usage", "ktradeoff", "examples"]
BUILD_PDF = shutil.which("latexmk") is not None
REPORT_FIGURES = [
    f"results/report/figures/{d}-{k}.{ext}" for d in DATASETS for k in FIGURE_KINDS for ext in ("pdf", "png")
]


# Stage boundaries for DVC (dvc.yaml): stamps written once everything before them is done.
rule stamp_models:
    input:
        lambda w: stage_targets("models", "certify"),
    output:
        touch("results/models.stamp"),


rule stamp_evaluation:
    input:
        TARGETS,
    output:
        touch("results/evaluation.stamp"),


rule report:
    input:
        TARGETS,
    output:
        main=report("results/report/tables/main.tex", caption="../report/captions/main_table.rst", category="Tables"),
        vocab=report("results/report/tables/vocab.tex", caption="../report/captions/vocab_table.rst", category="Tables"),
        cost=report("results/report/tables/cost.tex", caption="../report/captions/cost_table.rst", category="Tables"),
        main_md="results/report/tables/main.md",
        figures=[
            report(f, caption=f"../report/captions/{f.rsplit('-', 1)[1].split('.')[0]}.rst", category="Figures")
            if f.endswith(".png")
            else f
            for f in REPORT_FIGURES
        ],
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


TARGETS_REPORT = ["results/report/report.tex"] + (["results/report/report.pdf"] if BUILD_PDF else [])
