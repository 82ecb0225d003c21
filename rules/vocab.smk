# Vocabulary stage: draw, fit or train each named vocabulary on a dataset's training patches.


rule vocab:
    input:
        train=rules.data.output.train,
        test=rules.data.output.test,
        manifest=rules.data.output.manifest,
    output:
        vocab="results/{dataset}/vocab/{vocab}.pt",
        metrics="results/{dataset}/vocab/{vocab}.json",
    params:
        recipe=lambda w: tc.order_free(PLAN.vocabularies[w.vocab]),
        patch_size=lambda w: tc.patch_size(config, PLAN.vocabularies[w.vocab]),
        code=code("vocab.py"),
    log:
        "logs/vocab/{dataset}/{vocab}.log",
    benchmark:
        "benchmarks/rules/vocab/{dataset}/{vocab}.tsv"
    # 1 thread: two 1-thread jobs on 2 cores beat one 2-thread job (measured in rules/attack.smk)
    threads: 1
    priority: 4  # every classifier waits for its vocabulary (few seconds each): build them first (above training)
    resources:
        gpu=lambda w: int(PLAN.vocabularies[w.vocab]["kind"] == "learned"),
        mem_mb=8000,
        runtime=120,
    conda:
        CONDA_ENV
    script:
        "../scripts/vocab.py"
