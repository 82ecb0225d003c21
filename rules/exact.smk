# Exact single-flip (R_2) certificates of the attacked discrete models, bracketed by the attacks.


rule exact_certify:
    input:
        unpack(classifier_inputs),
        model=rules.train.output.model,
        attacks=rules.attack_worst.output.samples,
    output:
        summary="results/{dataset}/exact/{model}.json",
        samples="results/{dataset}/exact/{model}.csv",
    params:
        exact=config["exact"],
        radii=config["radii"],
        units=units,
    log:
        "logs/exact_certify/{dataset}/{model}.log",
    benchmark:
        "benchmarks/rules/exact_certify/{dataset}/{model}.tsv"
    # 1 thread: two 1-thread jobs on 2 cores beat one 2-thread job (measured in rules/attack.smk)
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/exact.py"


TARGETS += [rules.exact_certify.output.summary.format(dataset=d, model=m) for d in DATASETS for m in PLAN.exact
            if m in PLAN.datasets[d].models]
