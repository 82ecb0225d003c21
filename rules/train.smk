# Train stage: the study's classifiers per dataset (baseline, discrete-<vocab>, noise-<sigma>).


rule train:
    input:
        unpack(classifier_inputs),
        train=rules.data.output.train,
    output:
        model="results/{dataset}/models/{model}/model.pt",
        metrics="results/{dataset}/models/{model}/metrics.csv",
        final="results/{dataset}/models/{model}/final.json",
    params:
        training=lambda w: PLAN.datasets[w.dataset].training,
        units=units,
    log:
        "logs/train/{dataset}/{model}.log",
    benchmark:
        "benchmarks/rules/train/{dataset}/{model}.tsv"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/train.py"


TARGETS += [rules.train.output.final.format(dataset=d, model=m) for d in DATASETS for m in PLAN.datasets[d].models]
