# Train stage: the study's classifiers per dataset (baseline, discrete-<vocab>, noise-<sigma>).

# Smoothing settings per dataset: `datasets.<name>.smoothing` (or its alias target's) merged over `smoothing`.
SMOOTHING = {d: tc.dataset_section(config, d, "smoothing") for d in config["datasets"]}
# Classifiers per dataset: the study's models, with noise models on the dataset's sigma grid.
DATASET_MODELS = {
    d: [m for m in MODELS if tc.parse_model(m)[0] != "noise"] + [tc.noise_model(s) for s in SMOOTHING[d]["sigmas"]]
    for d in DATASETS
}
# Inputs of a rule on classifier {model}: the test split, and the vocabulary of a discrete one.
CLASSIFIER_INPUTS = lambda w: {
    "test": f"data/{w.dataset}/test.pt",
    "manifest": f"data/{w.dataset}/manifest.json",
    **({"vocab": f"results/{w.dataset}/vocab/{tc.parse_model(w.model)[1]}.pt"}
       if tc.parse_model(w.model)[0] == "discrete" else {}),
}


rule train:
    input:
        unpack(CLASSIFIER_INPUTS),
        train="data/{dataset}/train.pt",
    output:
        model="results/{dataset}/models/{model}/model.pt",
        metrics="results/{dataset}/models/{model}/metrics.csv",
        final="results/{dataset}/models/{model}/final.json",
    params:
        training=lambda w: tc.training_params(config, w.dataset),
        units=lambda w: tc.dataset_units(config, w.dataset),
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


TARGETS += [f"results/{d}/models/{m}/final.json" for d in DATASETS for m in DATASET_MODELS[d]]
