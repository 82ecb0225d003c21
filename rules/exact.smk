# Exact single-flip (R_2) certificates of the attacked discrete models, bracketed by the attacks.


rule exact_certify:
    input:
        model="results/{dataset}/models/{model}/model.pt",
        vocab=lambda w: f"results/{w.dataset}/vocab/{tc.parse_model(w.model)[1]}.pt",
        attacks="results/{dataset}/attacks/{model}/worst.csv",
        test="data/{dataset}/test.pt",
        manifest="data/{dataset}/manifest.json",
    output:
        summary="results/{dataset}/exact/{model}.json",
        samples="results/{dataset}/exact/{model}.csv",
    params:
        exact=config["exact"],
        radii=config["radii"],
        units=lambda w: tc.dataset_units(config, w.dataset),
    log:
        "logs/exact_certify/{dataset}/{model}.log",
    benchmark:
        "benchmarks/rules/exact_certify/{dataset}/{model}.tsv"
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/exact.py"


TARGETS += expand("results/{dataset}/exact/{model}.json", dataset=DATASETS, model=tc.exact_models(config))
