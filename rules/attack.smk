# Attack stage: each attack of the suite on each attacked model, then the per-sample worst case.


def attacked_pairs():
    """(model, attack) pairs: surrogate and token-flip attacks only apply to discrete models."""
    pairs = []
    for model in config["attacks"]["models"]:
        discrete = tc.parse_model(model)[0] == "discrete"
        for attack in config["attacks"]["suite"]:
            if attack == "transfer" and (not discrete or "baseline" not in MODELS):
                continue
            if discrete or attack in ("pgd", "square"):
                pairs.append((model, attack))
    return pairs


def attack_inputs(w):
    kind, vocab = tc.parse_model(w.model)
    inputs = {
        "model": f"results/{w.dataset}/models/{w.model}/model.pt",
        "test": f"data/{w.dataset}/test.pt",
        "manifest": f"data/{w.dataset}/manifest.json",
    }
    if kind == "discrete":
        inputs["vocab"] = f"results/{w.dataset}/vocab/{vocab}.pt"
    if w.attack == "transfer":
        inputs["baseline"] = f"results/{w.dataset}/models/baseline/model.pt"
    return inputs


rule attack:
    input:
        unpack(attack_inputs),
    output:
        summary="results/{dataset}/attacks/{model}/{attack}.json",
        samples="results/{dataset}/attacks/{model}/{attack}.csv",
    params:
        attacks=config["attacks"],
        units=config["units"],
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
            f"results/{w.dataset}/attacks/{w.model}/{a}.csv" for m, a in attacked_pairs() if m == w.model
        ],
        summaries=lambda w: [
            f"results/{w.dataset}/attacks/{w.model}/{a}.json" for m, a in attacked_pairs() if m == w.model
        ],
        manifest="data/{dataset}/manifest.json",
    output:
        summary="results/{dataset}/attacks/{model}/worst.json",
        samples="results/{dataset}/attacks/{model}/worst.csv",
    params:
        units=config["units"],
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
    model=sorted({m for m, _ in attacked_pairs()}),
)
