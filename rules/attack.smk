# Attack stage: each attack of the suite on each attacked model, then the per-sample worst case.


rule attack:
    input:
        unpack(classifier_inputs),
        model=rules.train.output.model,
        baseline=lambda w: [model_file(w.dataset, tc.BASELINE)] if w.attack == "transfer" else [],
    output:
        summary="results/{dataset}/attacks/{model}/{attack}.json",
        samples="results/{dataset}/attacks/{model}/{attack}.csv",
    params:
        # what changes this attack's result: the budget, the test images, its own and PGD's settings
        attacks=lambda w: {k: v for k, v in config["attacks"].items() if k in ("eps", "n_images", "pgd", w.attack)},
        units=units,
    log:
        "logs/attack/{dataset}/{model}/{attack}.log",
    benchmark:
        "benchmarks/rules/attack/{dataset}/{model}/{attack}.tsv"
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/attack.py"


rule attack_worst:
    input:
        samples=lambda w: attack_files(w.dataset, w.model, "samples"),
        summaries=lambda w: attack_files(w.dataset, w.model),
        manifest=rules.data.output.manifest,
    output:
        summary=f"results/{{dataset}}/attacks/{{model}}/{WORST}.json",
        samples=f"results/{{dataset}}/attacks/{{model}}/{WORST}.csv",
    params:
        units=units,
    log:
        "logs/attack_worst/{dataset}/{model}.log",
    benchmark:
        "benchmarks/rules/attack_worst/{dataset}/{model}.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/attack_worst.py"


TARGETS += expand(rules.attack_worst.output.summary, dataset=DATASETS, model=PLAN.attacked_models())
