# Smooth stage: randomized smoothing (Cohen et al. 2019) of the noise classifiers and of
# discrete classifiers.

# Settings that change the smoothing results (the sigma grid and model list only pick jobs).
SMOOTHING_KEYS = ("n0", "n", "alpha", "batch_size", "precision", "every", "max_images")


rule smooth:
    input:
        unpack(classifier_inputs),
        model=rules.train.output.model,
    output:
        tsv="results/{dataset}/smooth/{model}/sigma-{sigma}.tsv",
        summary="results/{dataset}/smooth/{model}/sigma-{sigma}.json",
    params:
        smoothing=lambda w: tc.order_free({k: v for k, v in PLAN.datasets[w.dataset].smoothing.items()
                                           if k in SMOOTHING_KEYS}),
        sigma=lambda w: recipe(w).sigma,  # the recipe's (checked against the classifier's own)
        radii=config["radii"],
        units=units,
        code=code("smooth.py"),
    log:
        "logs/smooth/{dataset}/{model}/sigma-{sigma}.log",
    benchmark:
        "benchmarks/rules/smooth/{dataset}/{model}/sigma-{sigma}.tsv"
    # 1 thread: two 1-thread jobs on 2 cores beat one 2-thread job (measured in rules/attack.smk)
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/smooth.py"


TARGETS += [
    rules.smooth.output.summary.format(dataset=d, model=m, sigma=tc.format_sigma(s))
    for d in DATASETS
    for m, s in PLAN.datasets[d].smoothed
]
