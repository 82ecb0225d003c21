# Stage boundaries for DVC (dvc.yaml): once everything before them is done, each stamp lists
# the stage's results with their sha256 (so `dvc status` sees what changed).
rule stamp_models:
    input:
        lambda w: stage_targets("models", "certify"),
    output:
        "results/models.stamp",
    log:
        "logs/stamp_models/stamp.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/stamp.py"


rule stamp_evaluation:
    input:
        TARGETS,
    output:
        "results/evaluation.stamp",
    log:
        "logs/stamp_evaluation/stamp.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/stamp.py"
