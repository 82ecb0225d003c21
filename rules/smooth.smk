# Smooth stage: randomized smoothing (Cohen et al. 2019) of the noise classifiers and of
# discrete classifiers, and the certified accuracy of every discrete classifier with R_0.

# Settings that change the smoothing results (the sigma grid and model list only pick jobs).
SMOOTHING_KEYS = ("n0", "n", "alpha", "batch_size", "every", "max_images")


# (model, sigma) pairs smoothed per dataset: noise-<s> at s, listed discrete models at every s.
SMOOTHED = {
    d: [(tc.noise_model(s), s) for s in SMOOTHING[d]["sigmas"]]
    + [(f"{tc.DISCRETE_PREFIX}{v}", s) for v in SMOOTHING[d].get("discrete", []) for s in SMOOTHING[d]["sigmas"]]
    for d in DATASETS
}


rule smooth:
    input:
        unpack(CLASSIFIER_INPUTS),
        model="results/{dataset}/models/{model}/model.pt",
    output:
        tsv="results/{dataset}/smooth/{model}/sigma-{sigma}.tsv",
        summary="results/{dataset}/smooth/{model}/sigma-{sigma}.json",
    params:
        smoothing=lambda w: {k: v for k, v in SMOOTHING[w.dataset].items() if k in SMOOTHING_KEYS},
        radii=config["radii"],
        units=lambda w: tc.dataset_units(config, w.dataset),
    log:
        "logs/smooth/{dataset}/{model}/sigma-{sigma}.log",
    benchmark:
        "benchmarks/rules/smooth/{dataset}/{model}/sigma-{sigma}.tsv"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/smooth.py"


rule certacc:
    input:
        model="results/{dataset}/models/discrete-{vocab}/model.pt",
        vocab="results/{dataset}/vocab/{vocab}.pt",
        certificate="results/{dataset}/certify/{vocab}.pt",
        certify_summary="results/{dataset}/certify/{vocab}.json",
        test="data/{dataset}/test.pt",
        manifest="data/{dataset}/manifest.json",
    output:
        "results/{dataset}/certacc/discrete-{vocab}.json",
    params:
        radii=config["radii"],
        units=lambda w: tc.dataset_units(config, w.dataset),
    log:
        "logs/certacc/{dataset}/discrete-{vocab}.log",
    benchmark:
        "benchmarks/rules/certacc/{dataset}/discrete-{vocab}.tsv"
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/certacc.py"


TARGETS += [
    f"results/{d}/smooth/{m}/sigma-{tc.format_sigma(s)}.json" for d in DATASETS for m, s in SMOOTHED[d]
]
TARGETS += [f"results/{d}/certacc/discrete-{v}.json" for d in DATASETS for v in DISCRETE_VOCABS]
