# Certificate stage: exact patch certificate maps of the whole test set, and their summaries.


rule certify:
    input:
        vocab=rules.vocab.output.vocab,
        test=rules.data.output.test,
        manifest=rules.data.output.manifest,
    output:
        maps="results/{dataset}/certify/{vocab}.pt",
        summary="results/{dataset}/certify/{vocab}.json",
    params:
        units=units,
        code=code("certify.py"),
    log:
        "logs/certify/{dataset}/{vocab}.log",
    benchmark:
        "benchmarks/rules/certify/{dataset}/{vocab}.tsv"
    # 1 thread: two 1-thread jobs on 2 cores beat one 2-thread job (measured in rules/attack.smk)
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/certify.py"


TARGETS += expand("results/{dataset}/certify/{vocab}.json", dataset=DATASETS, vocab=list(PLAN.vocabularies))
