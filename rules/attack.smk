# Attack stage: each attack of the suite on each attacked model, then the per-sample worst case.


rule attack:
    input:
        model="results/{dataset}/models/{model}/model.pt",
        test="data/{dataset}/test.pt",
        manifest="data/{dataset}/manifest.json",
        vocab=lambda w: [f"results/{w.dataset}/vocab/{v}.pt" for k, v in [tc.parse_model(w.model)] if k == "discrete"],
        baseline=lambda w: [f"results/{w.dataset}/models/baseline/model.pt"] if w.attack == "transfer" else [],
    output:
        summary="results/{dataset}/attacks/{model}/{attack}.json",
        samples="results/{dataset}/attacks/{model}/{attack}.csv",
    params:
        # what changes this attack's result: the budget, the test images, its own and PGD's settings
        attacks=lambda w: {k: v for k, v in config["attacks"].items() if k in ("eps", "n_images", "pgd", w.attack)},
        units=lambda w: tc.dataset_units(config, w.dataset),
    wildcard_constraints:
        attack="|".join(["pgd", "sspgd", "bpda", "transfer", "square", "tokenflip"]),
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
        samples=lambda w: [
            f"results/{w.dataset}/attacks/{w.model}/{a}.csv" for m, a in tc.attacked_pairs(config) if m == w.model
        ],
        summaries=lambda w: [
            f"results/{w.dataset}/attacks/{w.model}/{a}.json" for m, a in tc.attacked_pairs(config) if m == w.model
        ],
        manifest="data/{dataset}/manifest.json",
    output:
        summary="results/{dataset}/attacks/{model}/worst.json",
        samples="results/{dataset}/attacks/{model}/worst.csv",
    params:
        units=lambda w: tc.dataset_units(config, w.dataset),
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


TARGETS += expand(
    "results/{dataset}/attacks/{model}/worst.json",
    dataset=DATASETS,
    model=sorted({m for m, _ in tc.attacked_pairs(config)}),
)
