# Train stage: the study's classifiers per dataset, each from its recipe (tokencert.config.Recipe).

LONG_TRAINING = {"flipset": 2, "gloro": 1, "pgd_at": 1, "trades": 1}  # scheduling priority by objective


rule train:
    input:
        unpack(classifier_inputs),
        train=rules.data.output.train,
    output:
        model="results/{dataset}/models/{model}/model.pt",
        metrics="results/{dataset}/models/{model}/metrics.csv",
        final="results/{dataset}/models/{model}/final.json",
    wildcard_constraints:
        model=models_regex(trained=True),
    params:
        # the dataset's training section with the recipe's overrides, and what it minimises
        training=lambda w: tc.order_free(tc.deep_merge(PLAN.datasets[w.dataset].training, recipe(w).training)),
        objective=lambda w: recipe(w).objective,
        units=units,
        code=lambda w: code("train.py", OBJECTIVE_CODE.get(recipe(w).kind)),
    log:
        "logs/train/{dataset}/{model}.log",
    benchmark:
        "benchmarks/rules/train/{dataset}/{model}.tsv"
    # 1 thread: two 1-thread jobs on 2 cores beat one 2-thread job (measured in rules/attack.smk)
    threads: 1
    # every training before the attacks and certificates (at c1c893a discrete-gauss's 9 s training started 283 s
    # into a 413 s run, and the chain it heads ended the run with a core idle), the longest first: certified
    # training (flipset: 10x a standard step) heads the study's longest chain (at 5f045a6 it started 8.5 minutes
    # into a 14-minute run)
    priority: lambda w: 1 + LONG_TRAINING.get(recipe(w).kind, 0)
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/train.py"


TARGETS += [rules.train.output.final.format(dataset=d, model=m) for d in DATASETS for m in PLAN.datasets[d].models]


# A classifier the researcher already has (classifiers.external): loaded, never trained.
rule import_classifier:
    input:
        unpack(classifier_inputs),
        checkpoint=lambda w: recipe(w).external["checkpoint"],
    output:
        model="results/{dataset}/models/{model}/model.pt",
        final="results/{dataset}/models/{model}/final.json",
    wildcard_constraints:
        model=models_regex(trained=False),
    params:
        external=lambda w: tc.order_free(recipe(w).external),
        units=units,
        code=code("import_classifier.py"),
    log:
        "logs/import_classifier/{dataset}/{model}.log",
    benchmark:
        "benchmarks/rules/import_classifier/{dataset}/{model}.tsv"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/import_classifier.py"
